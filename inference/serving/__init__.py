"""Serving: the bounded request queue that coalesces compatible requests into batches."""
