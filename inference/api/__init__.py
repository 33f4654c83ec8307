"""The HTTP API: one FastAPI app, one router per API dialect, and the one mapping of
domain errors to each dialect's error shape (`errors.py`)."""
