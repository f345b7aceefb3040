"""One suite per port, run against every real adapter and its in-memory fake."""
