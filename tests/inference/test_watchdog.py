"""A pipeline call stuck inside one step (issue 14): the watchdog fails its requests with
503 and marks the replica wedged, /healthz fails after twice --stall-seconds so that the
pod is restarted, and SIGTERM ends the process within --drain-timeout-seconds although the
stuck thread never returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .server import REPO, free_port, wait_ready
from .serving_helpers import SMALL, WAIT_LIMIT_S, metric, wait_until

STALL_S = 2.0
DRAIN_TIMEOUT_S = 4.0
# A second to close connections after the drain deadline (server._exit_soon), plus the
# interpreter's exit on a loaded machine.
EXIT_MARGIN_S = 4.0


@pytest.fixture
def stuck_server(cache_dir, tmp_path, request):
    stall, drain = getattr(request, "param", (STALL_S, DRAIN_TIMEOUT_S))
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.inference.stuck_server", str(port), str(cache_dir), str(stall), str(drain)],
            cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process=process)
        yield url, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_stuck_call_fails_its_requests_marks_the_replica_wedged_then_fails_liveness(stuck_server):
    url, _, log_path = stuck_server
    with httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as client, ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        running = pool.submit(client.post, "/v1/txt2img", json={"prompt": "stuck", **SMALL})
        wait_until(lambda: metric(client, "sd_in_flight_requests") == 1, "the call to start")
        queued = pool.submit(client.post, "/v1/txt2img", json={"prompt": "behind it", "seed": 2, **SMALL, "steps": 3})
        first, second = running.result(WAIT_LIMIT_S), queued.result(WAIT_LIMIT_S)
        waited = time.monotonic() - started
        for response in (first, second):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "Stalled"
        assert STALL_S <= waited < STALL_S + 5, waited
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "wedged"
        refused = client.post("/v1/txt2img", json={"prompt": "new", **SMALL})
        assert refused.status_code == 503 and refused.json()["error"] == "Stalled"
        # Liveness holds until twice --stall-seconds, then fails: the kubelet restarts the pod.
        wait_until(lambda: client.get("/healthz").status_code == 503, "liveness to fail")
        assert time.monotonic() - started >= 2 * STALL_S
        assert client.get("/healthz").json()["status"] == "stuck"
    assert "no step progress" in log_path.read_text(errors="replace")


# --stall-seconds far beyond the drain timeout: the drain deadline, not the watchdog, ends it.
@pytest.mark.parametrize("stuck_server", [(600.0, DRAIN_TIMEOUT_S)], indirect=True)
def test_sigterm_ends_the_process_within_the_drain_timeout_with_a_stuck_call(stuck_server):
    url, process, log_path = stuck_server
    with httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as client, ThreadPoolExecutor(1) as pool:
        pool.submit(client.post, "/v1/txt2img", json={"prompt": "stuck", **SMALL})
        wait_until(lambda: metric(client, "sd_in_flight_requests") == 1, "the call to start")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(DRAIN_TIMEOUT_S + EXIT_MARGIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {DRAIN_TIMEOUT_S + EXIT_MARGIN_S}s after SIGTERM")
        drain_seconds = time.monotonic() - signalled
    print(f"exit {code} {drain_seconds:.2f}s after SIGTERM (drain timeout {DRAIN_TIMEOUT_S}s)")
    assert code != 0, "not a clean drain"
    assert drain_seconds >= DRAIN_TIMEOUT_S - 0.5, "it waited for the drain first"
    log_text = log_path.read_text(errors="replace")
    assert "received SIGTERM: draining" in log_text
    assert "drain timeout" in log_text


def test_sigterm_after_the_watchdog_gave_up_exits_without_waiting_for_the_stuck_thread(stuck_server):
    url, process, _ = stuck_server
    with httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as client:
        response = client.post("/v1/txt2img", json={"prompt": "stuck", **SMALL})
        assert response.status_code == 503  # the watchdog answered it after STALL_S
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(DRAIN_TIMEOUT_S + EXIT_MARGIN_S)
    # Nothing is left to drain; the stuck thread is a daemon and does not hold the exit.
    assert code == 0
    assert time.monotonic() - signalled < DRAIN_TIMEOUT_S
