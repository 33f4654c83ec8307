"""The model engine: loading pipelines and running batches of image generations.

Nothing here knows about HTTP or the queue; the service layer and the batcher call into
it (docs/architecture.md, "The server's modules").
"""
