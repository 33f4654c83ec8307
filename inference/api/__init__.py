"""The HTTP API: one FastAPI app, one router per API dialect."""
