"""Entry points for other programs (the OrderFlow app) and the operator's CLI."""
