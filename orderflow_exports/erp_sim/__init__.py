"""A simulated ERP for demos and soak tests: takes exported orders and answers with ack files."""
