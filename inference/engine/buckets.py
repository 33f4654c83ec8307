"""Batch buckets: the few batch sizes a compiled pipeline is run at.

A compiled UNet (and a captured CUDA graph) is specialised to its input shapes, so every
new batch size costs a compile (about a minute for SD 1.5 on an H100, docs/benchmarks.md).
Dynamic batching produces every size from 1 to `--max-batch-size`; rounded up to a bucket
(1, 2, 4, 8, ... and the maximum itself), they are few. The padding is made of copies of
the batch's last task whose images are dropped: each image keeps its own generator, so an
image is the same whatever bucket it ran in (tests/inference/test_fast_path.py).

Pure Python: no torch here.
"""

from __future__ import annotations


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two below `max_batch_size`, then the maximum itself: 6 -> (1, 2, 4, 6)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    sizes = []
    size = 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)


def bucket_for(count: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds `count` images (`count` itself past the largest)."""
    if count < 1:
        raise ValueError(f"a batch holds at least one image, got {count}")
    for size in buckets:
        if size >= count:
            return size
    return count
