"""/metrics moves as work is done, and the cold start is measured from process spawn."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from .server import REPO
from .serving_helpers import SMALL, Gate, gated_server, metric, scrape, wait_until


def test_metrics_follow_the_work(cache_dir):
    gate = Gate()
    with gated_server(cache_dir, gate, max_batch_size=4, batch_window_ms=0) as client:
        before = scrape(client)
        assert before[("sd_images_generated_total", frozenset())] == 0
        assert before[("sd_ready", frozenset())] == 1
        assert before[("sd_model_load_seconds", frozenset({("model", "builtin:tiny")}))] > 0
        assert before[("sd_startup_seconds", frozenset())] > 0

        gate.close()
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(client.post, "/v1/txt2img", json={"prompt": "one", "batch_size": 2, **SMALL})
            wait_until(gate.entered.is_set, "the generation to start")
            waiting = pool.submit(client.post, "/v1/txt2img", json={"prompt": "two", **SMALL, "steps": 2})
            wait_until(lambda: metric(client, "sd_queue_depth") == 2, "two requests admitted")
            assert metric(client, "sd_in_flight_requests") == 1
            assert metric(client, "sd_queue_waiting") == 1
            gate.open()
            assert running.result().status_code == 200 and waiting.result().status_code == 200

        after = scrape(client)
        assert after[("sd_queue_depth", frozenset())] == 0
        assert after[("sd_in_flight_requests", frozenset())] == 0
        assert after[("sd_images_generated_total", frozenset())] == 3
        assert after[("sd_denoising_steps_total", frozenset())] == 2 * 3 + 1 * 2
        assert after[("sd_batch_size_count", frozenset())] == 2
        assert after[("sd_batch_size_sum", frozenset())] == 3
        assert after[("sd_generation_seconds_total", frozenset())] > 0
        assert after[("sd_steps_per_second", frozenset())] > 0
        ok = frozenset({("route", "/v1/txt2img"), ("method", "POST"), ("status", "200")})
        assert after[("sd_request_duration_seconds_count", ok)] == 2

        assert client.post("/v1/txt2img", json={"prompt": "x", "width": 65}).status_code == 422
        invalid = frozenset({("route", "/v1/txt2img"), ("method", "POST"), ("status", "422")})
        assert scrape(client)[("sd_request_duration_seconds_count", invalid)] == 1


def test_the_server_logs_its_cold_start_from_process_spawn(tiny_server, tiny):
    match = re.search(
        r"ready in ([0-9.]+)s after process start .*importing torch/transformers/diffusers took ([0-9.]+)s,"
        r" ([0-9.]+)s beyond them",
        tiny_server.log(),
    )
    assert match, "the cold start is logged, with its import time apart"
    startup, imports, beyond = (float(group) for group in match.groups())
    samples = scrape(tiny)
    assert abs(samples[("sd_startup_seconds", frozenset())] - startup) < 0.01  # the log rounds to 10 ms
    assert abs(samples[("sd_startup_import_seconds", frozenset())] - imports) < 0.01
    # Spawn to ready covers the model load and everything before it.
    assert startup > samples[("sd_model_load_seconds", frozenset({("model", "builtin:tiny")}))]
    # The imports happen in this process (the server imports none of them before it loads),
    # so they take real time, and they are part of the ready figure, not added to it.
    assert 0 < imports < startup
    assert beyond > 0 and abs(imports + beyond - startup) < 0.02


def test_process_age_counts_from_spawn_not_from_import():
    # The child sleeps before importing the clock: an import-time stamp would miss that.
    code = (
        "import time; time.sleep(0.5)\n"
        "from inference.serving.process_clock import process_age_seconds\n"
        "print(process_age_seconds())"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert float(output.stdout) >= 0.5


def test_made_up_methods_and_paths_add_no_series(tiny):
    """Issue 14: every request-metric label comes from a bounded set, whatever the client
    writes as method or path."""

    def series() -> set[frozenset]:
        return {labels for (name, labels) in scrape(tiny) if name == "sd_request_duration_seconds_count"}

    # One of each kind first, so that its (bounded) series exists before the count.
    tiny.request("MADEUP0", "/healthz")
    tiny.request("MADEUP0", "/sdapi/v1/x0")
    tiny.get("/no/such/path/0")
    series()
    before = series()
    for number in range(1, 2001):
        tiny.request(f"MADEUP{number}", "/healthz" if number % 2 else f"/sdapi/v1/x{number}")
        if number % 10 == 0:
            tiny.get(f"/no/such/path/{number}")
    after = series()
    assert after == before, sorted(map(sorted, after - before))[:5]
    values = {value for labels in after for _, value in labels}
    assert not any("MADEUP" in value or "/no/such" in value for value in values)
    assert frozenset({("route", "/healthz"), ("method", "other"), ("status", "405")}) in after
