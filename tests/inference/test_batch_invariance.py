"""engine/batch_invariance.py on its own: a few-row Linear call gives each row the bits
an 8-row call gives it, and torch.compile traces the padded Linear as one graph (the
server's `--compile max` on a CPU compiles the batch-invariant pipeline with fullgraph)."""

from __future__ import annotations

import torch

from inference.engine.batch_invariance import MIN_ROWS, make_batch_invariant


class _Pipeline:
    def __init__(self, **components):
        self.components = components


def _invariant_linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    linear = torch.nn.Linear(320, 1280)
    make_batch_invariant(_Pipeline(linear=linear, scheduler=object()))
    return linear


def test_a_few_rows_get_the_bits_of_a_full_call():
    linear = _invariant_linear()
    rows = torch.randn(MIN_ROWS, 320)
    with torch.no_grad():
        full = linear(rows)
        for count in (1, 2, MIN_ROWS - 1):
            alone = linear(rows[:count])
            assert alone.shape == (count, 1280)
            assert torch.equal(alone, full[:count])


def test_the_padded_linear_compiles_as_one_graph():
    linear = _invariant_linear()
    compiled = torch.compile(linear, fullgraph=True, backend="eager", dynamic=False)
    rows = torch.randn(2, 320)
    with torch.no_grad():
        assert torch.equal(compiled(rows), linear(rows))
