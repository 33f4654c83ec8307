"""The GPU benchmark's harness on the CPU (bench/gpu.py, gpu_harness.py, cuda_graph.py):
what a lent GPU runs once, with no second try, checked here where it can be.

- a stage that raises is recorded in the JSON and the run goes on with the next one;
- the JSON on disk holds every row as soon as it is measured (a run killed by the
  device's timeout keeps them);
- a server's wait for ready never outlasts the budget, and its log can be kept;
- the fp16-variant model folder the CUDA run saves is what the server's float16 load reads;
- the CUDA-graph wrapper of the compile sweep replays with each call's own inputs.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from bench import gpu, gpu_configs
from bench.gpu_harness import EAGER, PLAIN_FP32, Bench


def _args(tmp_path: Path, **overrides) -> argparse.Namespace:
    values = dict(
        smoke=True, smoke_compile=False, out=tmp_path / "out.json", steps=4, short_steps=2, reps=1, clients=2,
        http_requests=1, budget_s=470.0, server_timeout_s=420.0, server_logs=None, stages=None,
        work_dir=tmp_path / "work", report=None,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def test_a_failing_stage_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """Saving the SD 1.5 folder fails: the server stages that need it are skipped with a
    note, the SDXL stages still run, and every row was on disk when the next was timed."""
    bench = Bench(_args(tmp_path))
    built = []

    def fake_build(arch, plain_fp32=False):
        built.append((arch["name"], plain_fp32))
        return object()

    on_disk_before_each_call = []

    def fake_caller(pipe, arch):
        def call(batch, steps):
            on_disk_before_each_call.append(len(json.loads(bench.args.out.read_text())["rows"]))
            return 0.01 * steps * batch

        return call

    def failing_save(pipe, folder):
        raise OSError("No space left on device")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a server stage ran without a saved model")

    monkeypatch.setattr(bench, "build", fake_build)
    monkeypatch.setattr(bench, "pipe_caller", fake_caller)
    monkeypatch.setattr(bench, "save_for_server", failing_save)
    monkeypatch.setattr(bench, "load_server_path", must_not_run)
    monkeypatch.setattr(gpu, "http_stage", must_not_run)
    monkeypatch.setattr(gpu, "nobatch_stage", must_not_run)
    bench.save()  # as the first note would

    gpu.run(bench)

    saved = json.loads(bench.args.out.read_text())
    sd15, sdxl = gpu_configs.SD15_SMOKE["name"], gpu_configs.SDXL_SMOKE["name"]
    # The plain fp32 baselines come last, each model built again for them.
    assert built == [(sd15, False), (sdxl, False), (sd15, True), (sdxl, True)]
    assert [(row["model"], row["mode"], row["batch"]) for row in saved["rows"]] == [
        (sd15, EAGER, 1), (sd15, EAGER, 4), (sdxl, EAGER, 1), (sdxl, EAGER, 4), (sd15, PLAIN_FP32, 1),
        (sdxl, PLAIN_FP32, 1),
    ]
    assert any("saving the model for the server failed: OSError: No space left on device" in n for n in saved["notes"])
    assert any("SD 1.5 server stages skipped" in n for n in saved["notes"])
    # measure() makes 4 calls per row (2 warm-up, 1 long, 1 short): the rows before each
    # call were already in the file.
    assert on_disk_before_each_call == [count for rows in range(6) for count in [rows] * 4]


def test_a_stage_error_keeps_the_start_and_end_of_a_long_message(tmp_path):
    bench = Bench(_args(tmp_path))

    def crash():
        raise RuntimeError("server exited with 1; see log:\n" + "x" * 10_000 + "\nCUDA error: out of memory")

    assert bench.attempt("HTTP and cold starts", crash) is None
    (note,) = json.loads(bench.args.out.read_text())["notes"]
    assert "HTTP and cold starts failed: RuntimeError: server exited with 1" in note
    assert note.endswith("CUDA error: out of memory") and len(note) < 3200


def test_the_wait_for_a_server_never_outlasts_the_budget_left(tmp_path):
    bench = Bench(_args(tmp_path, smoke=False, budget_s=470.0, server_timeout_s=420.0))
    assert bench.server_timeout() == pytest.approx(420.0, abs=1)
    bench.started = time.monotonic() - 200  # 270 s left
    assert bench.server_timeout() == pytest.approx(270.0, abs=1)
    bench.started = time.monotonic() - 460  # 10 s left: still long enough to say why it is slow
    assert bench.server_timeout() == 60.0


def test_a_server_that_exits_fails_with_its_log_tail_and_keeps_the_log(tmp_path):
    from bench.common import timed_server

    log = tmp_path / "server-bad.log"
    with pytest.raises(RuntimeError, match="no-such-flag"):
        with timed_server("--no-such-flag", cache_dir=tmp_path / "cache", timeout=60, log_path=log):
            pass
    assert "no-such-flag" in log.read_text()


def test_the_cuda_runs_fp16_folder_is_what_the_servers_float16_load_reads(tmp_path):
    """On CUDA the model is saved as the fp16 variant only and the server loads it in
    float16: the same here, in float16 on the CPU."""
    bench = Bench(_args(tmp_path))
    bench.dtype = torch.float16  # what a CUDA device gets
    pipe = bench.build(gpu_configs.SD15_SMOKE)
    folder = bench.save_for_server(pipe, tmp_path / "sd15")
    weights = sorted(p.name for p in (folder / "unet").iterdir() if p.suffix == ".safetensors")
    assert weights == ["diffusion_pytorch_model.fp16.safetensors"]
    model = bench.load_server_path(folder, mode="off")
    unet = model.text2img.unet
    assert unet.dtype == torch.float16 and model.device.dtype_name == "float16"
    expected = pipe.unet.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in unet.state_dict().items())


class _FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: what a forward registers while captured is
    what `replay` runs again, on the same (static) tensors."""

    capturing: _FakeGraph | None = None
    captures = 0

    def __init__(self):
        self.kernels = []

    def replay(self):
        for kernel in self.kernels:
            kernel()


@contextmanager
def _fake_capture(graph):
    _FakeGraph.capturing = graph
    _FakeGraph.captures += 1
    try:
        yield
    finally:
        _FakeGraph.capturing = None


class _FakeStream:
    def wait_stream(self, other):
        pass


def test_the_sweeps_cuda_graph_replays_each_calls_inputs(monkeypatch):
    from bench import cuda_graph

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", _fake_capture)
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextmanager(lambda: (yield))())
    eager_calls = []

    def forward(sample, timestep, *, scale):
        eager_calls.append(scale)
        out = sample * timestep * scale
        graph = _FakeGraph.capturing
        if graph is not None:
            graph.kernels.append(lambda: torch.mul(sample * timestep, scale, out=out))
        return out

    graphed = cuda_graph.capture_forward(forward, warmup_calls=2)
    x1, x2 = torch.randn(2, 3), torch.randn(2, 3)
    first = graphed(x1, torch.tensor(2.0), scale=3)
    assert torch.equal(first, x1 * 2 * 3) and eager_calls == [3, 3, 3]  # two warm-ups, one capture
    second = graphed(x2, torch.tensor(5.0), scale=3)
    assert torch.equal(second, x2 * 5 * 3), "a replay must read this call's inputs"
    assert torch.equal(first, x1 * 2 * 3), "an earlier output must not be overwritten by a replay"
    assert eager_calls == [3, 3, 3] and _FakeGraph.captures == 1
    graphed(x2, torch.tensor(5.0), scale=4)  # another constant: another graph
    graphed(torch.randn(4, 3), torch.tensor(1.0), scale=3)  # another shape: another graph
    assert _FakeGraph.captures == 3
