"""Prometheus metrics, on a registry owned by one app (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class Metrics:
    """Implements the batcher's observer interface and the HTTP timing hook."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The KEDA trigger of the component scales on this name: keep it.
        self.queue_depth = Gauge("sd_queue_depth", "Requests admitted and not finished (waiting + running)", registry=r)
        self.queue_waiting = Gauge("sd_queue_waiting", "Requests waiting for a batch", registry=r)
        self.in_flight = Gauge("sd_in_flight_requests", "Requests in the batch being generated", registry=r)
        self.batch_size = Histogram("sd_batch_size", "Images per pipeline call", buckets=BATCH_BUCKETS, registry=r)
        self.request_latency = Histogram(
            "sd_request_duration_seconds",
            "HTTP request latency by route and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter("sd_images_generated", "Images generated", registry=r)
        self.steps = Counter("sd_denoising_steps", "Denoising steps run, counted per image", registry=r)
        self.batch_seconds = Counter("sd_generation_seconds", "Seconds spent in pipeline calls", registry=r)
        self.steps_per_second = Gauge("sd_steps_per_second", "Denoising steps per second of the last batch", registry=r)
        self.rejected = Counter("sd_rejected_requests", "Requests refused because the queue was full", registry=r)
        self.failed_batches = Counter(
            "sd_failed_batches", "Pipeline calls that failed after retries, by error kind", ["kind"], registry=r
        )
        self.model_load_seconds = Gauge("sd_model_load_seconds", "Seconds the model took to load", ["model"], registry=r)
        self.startup_seconds = Gauge("sd_startup_seconds", "Seconds from process start to ready", registry=r)
        self.startup_import_seconds = Gauge(
            "sd_startup_import_seconds",
            "Seconds of the start-up spent importing torch, transformers and diffusers (part of sd_startup_seconds)",
            registry=r,
        )
        self.uncompiled_calls = Counter(
            "sd_uncompiled_calls",
            "Calls of a compiled module (unet, vae_decoder) that ran eager: a shape warm-up did not compile",
            ["module"],
            registry=r,
        )
        self.ready = Gauge("sd_ready", "1 when the server accepts generations", registry=r)

    # BatchObserver
    def batch_started(self, size: int) -> None:
        self.batch_size.observe(size)

    def batch_finished(self, size: int, steps: int, seconds: float) -> None:
        self.images.inc(size)
        self.steps.inc(steps)
        self.batch_seconds.inc(seconds)
        if seconds > 0:
            self.steps_per_second.set(steps / seconds)

    def batch_failed(self, size: int, kind: str) -> None:
        self.failed_batches.labels(kind=kind).inc()

    def queue_changed(self, depth: int, waiting: int, running: int) -> None:
        self.queue_depth.set(depth)
        self.queue_waiting.set(waiting)
        self.in_flight.set(running)

    def request_rejected(self) -> None:
        self.rejected.inc()

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        """`status`: the status label (api/middleware.py's status_label)."""
        self.request_latency.labels(route=route, method=method, status=status).observe(seconds)
