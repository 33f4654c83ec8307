"""Serving: the bounded request queue that coalesces compatible requests into batches
(`planner.py` decides, `batcher.py` runs). Never imports torch."""
