"""The model engine: loading pipelines and running batches of image generations.

Nothing here knows about HTTP; the API layer and the batcher call into it.
"""
