"""SIGTERM on a real server process: readiness turns false and new work is refused while
the in-flight generation finishes and gets its 200; then the process exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import decode_png
from .server import REPO, free_port, wait_ready
from .serving_helpers import SMALL, WAIT_LIMIT_S, metric, wait_until


def test_sigterm_drains_in_flight_work_then_exits_0(cache_dir, tmp_path):
    gate = tmp_path / "gate"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        # Each generation waits for the gate file, so it is in flight for as long as the
        # test needs, however fast or slow this machine is.
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.inference.gated_server", str(gate), str(port), str(cache_dir)],
            cwd=REPO,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(url, process=process)
        with httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as client, ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.post, "/v1/txt2img", json={"prompt": "finish me", "seed": 3, **SMALL})
            wait_until(lambda: metric(client, "sd_in_flight_requests") == 1, "the generation to be in flight")

            process.send_signal(signal.SIGTERM)
            wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to turn false")
            assert client.get("/readyz").json()["status"] == "draining"
            assert metric(client, "sd_ready") == 0
            refused = client.post("/v1/txt2img", json={"prompt": "too late", **SMALL})
            assert refused.status_code == 503
            assert refused.json()["error"] == "ShuttingDown"
            assert process.poll() is None, "the server waits for its in-flight generation"

            gate.touch()
            response = in_flight.result(timeout=WAIT_LIMIT_S)
        assert response.status_code == 200, response.text
        [image] = response.json()["images"]
        assert decode_png(image).size == (64, 64)
        assert process.wait(WAIT_LIMIT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log_text = log_path.read_text(errors="replace")
    assert "received SIGTERM: draining" in log_text
    assert "drained: every admitted request has finished" in log_text
