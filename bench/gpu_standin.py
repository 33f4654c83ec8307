"""A stand-in for the GPU pipeline: it takes the time an H100 takes and returns real-size,
photo-like images, so a real server process can be measured at GPU speed on a CPU machine.

    python -m bench.gpu_standin serve [the flags of `python -m inference serve`]

runs `inference.server.serve` (the same code path as `python -m inference serve`: the
Batcher, admission, the generation service, PNG encoding off the event loop, uvicorn)
with the runner the batcher calls replaced by `StandInRunner`. The model named by
`--model` still loads (use `builtin:tiny`: it is small) but is never called. The stand-in's
settings come from the environment variable `SD_BENCH_STANDIN` (JSON, see
`StandInSettings`), since every command-line flag belongs to `serve`.

The time model (`GpuTime`): a 512x512 call of `steps` steps at batch 1 takes
`steps / it_per_s` seconds (default 100 it/s: the fast path's target and stable-fast's
published SD 1.5 rate on an H100; the server's eager path measured 32.9 it/s, see
docs/benchmarks.md). Batch 4 takes `batch_scaling` (default 2.2) times batch 1's time;
other sizes are on the line through those two points, after padding to the fast path's
buckets (1, 2, 4, 8, ...), as the compiled path runs them. Other sizes scale with the
pixels. Text encoding and the VAE decode are not added: a slower GPU call would only give
the server more time per image, so leaving them out is the harder case for the server.

The wait is `time.sleep`, step by step with the server's step callback (progress and
interrupt work as with the real pipeline): it releases the GIL, as a CUDA synchronize
does. The real pipeline's Python (launching kernels; little with CUDA graphs) is not
modelled, so the server's own threads get the CPU a real GPU loop would leave them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inference.engine.buckets import batch_buckets, bucket_for
from inference.engine.generate import BatchKey, GenerationInterrupted, ImageTask

ENV = "SD_BENCH_STANDIN"
REFERENCE_PIXELS = 512 * 512


@dataclass(frozen=True)
class GpuTime:
    """Seconds one pipeline call takes on the GPU this stands in for."""

    it_per_s: float = 100.0  # at batch 1, 512x512
    batch_scaling: float = 2.2  # batch 4's call time / batch 1's
    max_batch_size: int = 4  # the buckets are batch_buckets(max_batch_size), as the fast path's

    def __post_init__(self) -> None:
        if self.it_per_s <= 0:
            raise ValueError(f"it_per_s must be positive, got {self.it_per_s}")
        if self.batch_scaling < 1:
            raise ValueError(f"batch_scaling (batch 4's time / batch 1's) must be at least 1, got {self.batch_scaling}")

    def padded(self, batch: int) -> int:
        return bucket_for(batch, batch_buckets(self.max_batch_size))

    def call_seconds(self, batch: int, steps: int, width: int = 512, height: int = 512) -> float:
        """Batch 1: steps / it_per_s; each image more adds (batch_scaling - 1) / 3 of that."""
        per_extra_image = (self.batch_scaling - 1) / 3
        scale = 1 + per_extra_image * (self.padded(batch) - 1)
        return steps / self.it_per_s * scale * (width * height / REFERENCE_PIXELS)

    def images_per_s(self, batch: int, steps: int) -> float:
        return batch / self.call_seconds(batch, steps)


def photo_like(seed: int, width: int = 512, height: int = 512) -> Image.Image:
    """An RGB image that PNG-compresses like a generated picture, not like noise (which
    does not compress) or flat colour (which compresses to almost nothing): six octaves
    of smooth, mostly luminance structure plus a fine grain of standard deviation 2.5.
    512x512 encodes to about 390 KB at PIL's default compress level 6 (453 KB at level 1);
    SD 1.5's 512x512 PNGs are about 300 to 450 KB."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), np.float32)
    for cells, amplitude in ((4, 70), (8, 45), (16, 28), (32, 16), (64, 9), (128, 5)):
        coarse = (rng.normal(0, 1, (cells, cells, 3)) * 40 + 128).clip(0, 255).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
        out += (smooth - 128) / 40 * amplitude
    luminance = out.mean(axis=2, keepdims=True)
    out = 0.7 * luminance + 0.3 * out + 128 + rng.normal(0, 2.5, out.shape)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")


@dataclass
class StandInSettings:
    """What `SD_BENCH_STANDIN` holds (JSON)."""

    it_per_s: float = 100.0
    batch_scaling: float = 2.2
    max_batch_size: int = 4
    pool: int = 16  # distinct images prepared once per size, handed out in turn
    # Where the server writes its process id ("pid") and one line per call ("calls.log":
    # "batch seconds started"), for the benchmark to read; None: nowhere.
    state_dir: str | None = None
    # Overrides inference.imaging.PNG_COMPRESS_LEVEL in the server (None: the server's own),
    # so one benchmark run can compare levels through the same server code.
    png_compress_level: int | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ=os.environ) -> StandInSettings:
        text = environ.get(ENV)
        if not text:
            raise SystemExit(f"error: {ENV} must hold the stand-in's settings as JSON")
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as error:
            raise SystemExit(f"error: {ENV}: {error}") from None


@dataclass
class StandInRunner:
    """The batcher's runner (engine/oom.py's BatchRunner): sleeps the GPU time, step by step,
    and returns one distinct photo-like image per task."""

    time_model: GpuTime = field(default_factory=GpuTime)
    pool: int = 16
    calls_log: Path | None = None
    _images: dict[tuple[int, int], list[Image.Image]] = field(default_factory=dict, init=False, repr=False)
    _next: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def prepare(self, width: int, height: int) -> list[Image.Image]:
        """The pool for a size, made once (before the first timed call, by the caller)."""
        with self._lock:
            if (width, height) not in self._images:
                self._images[(width, height)] = [photo_like(seed, width, height) for seed in range(self.pool)]
            return self._images[(width, height)]

    def __call__(self, key: BatchKey, tasks: list[ImageTask], on_step=None) -> list[Image.Image]:
        if len(tasks) > self.pool:
            raise ValueError(f"a batch of {len(tasks)} needs a pool of at least as many images, got {self.pool}")
        pool = self.prepare(key.width, key.height)
        seconds = self.time_model.call_seconds(len(tasks), key.steps, key.width, key.height)
        started = time.perf_counter()
        for step in range(key.steps):
            # Each step ends at its share of the call's time, so oversleeping does not add up.
            delay = started + seconds * (step + 1) / key.steps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if on_step is not None and on_step(step + 1, key.steps):
                raise GenerationInterrupted([])
        first = self._take(len(tasks))
        # Copies: each response owns its image, as the pipeline's fresh PIL images are.
        images = [pool[(first + i) % self.pool].copy() for i in range(len(tasks))]
        if self.calls_log is not None:
            with open(self.calls_log, "a") as log:
                # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes.
                log.write(f"{len(tasks)} {time.perf_counter() - started:.6f} {started:.6f}\n")
        return images

    def _take(self, count: int) -> int:
        with self._lock:
            first = self._next
            self._next = (self._next + count) % self.pool
            return first


def runner_from(settings: StandInSettings) -> StandInRunner:
    return StandInRunner(
        GpuTime(settings.it_per_s, settings.batch_scaling, settings.max_batch_size),
        pool=settings.pool,
        calls_log=Path(settings.state_dir) / "calls.log" if settings.state_dir else None,
    )


def main(argv: list[str] | None = None) -> int:
    from inference.__main__ import parse
    from inference.server import serve

    command, settings = parse(sys.argv[1:] if argv is None else argv)
    if command != "serve":
        raise SystemExit(f"error: only `serve` runs with the stand-in, got {command!r}")
    standin = StandInSettings.from_env()
    if standin.state_dir:
        (Path(standin.state_dir) / "pid").write_text(str(os.getpid()))
    if standin.png_compress_level is not None:
        import inference.imaging

        inference.imaging.PNG_COMPRESS_LEVEL = standin.png_compress_level
    runner = runner_from(standin)
    runner.prepare(512, 512)  # before ready: not a cost of the first request
    return serve(settings, wrap_runner=lambda real_runner: runner)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
