"""The bounded queue under load: bursts get 200 or 429 (never 5xx, never a hang), a
client that goes away frees its slot, and a failing pipeline call fails only its batch."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import torch

from .conftest import decode_png
from .serving_helpers import SMALL, WAIT_LIMIT_S, Gate, gated_server, metric, wait_until

QUEUE_SIZE = 4


def test_burst_of_four_times_the_queue_gets_only_200s_and_429s(cache_dir):
    gate = Gate()
    burst = 4 * QUEUE_SIZE
    with gated_server(cache_dir, gate, queue_size=QUEUE_SIZE, max_batch_size=2, batch_window_ms=0) as client:
        gate.close()  # nothing finishes until every request has been admitted or refused
        with ThreadPoolExecutor(burst) as pool:
            futures = [
                pool.submit(client.post, "/v1/txt2img", json={"prompt": f"burst {i}", "seed": i, **SMALL})
                for i in range(burst)
            ]
            wait_until(lambda: sum(f.done() for f in futures) == burst - QUEUE_SIZE, "the refusals")
            assert metric(client, "sd_queue_depth") == QUEUE_SIZE
            gate.open()
            responses = [f.result(timeout=WAIT_LIMIT_S) for f in futures]

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * QUEUE_SIZE + [429] * (burst - QUEUE_SIZE)
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["error"] == "QueueFull"
            else:
                [image] = response.json()["images"]
                assert decode_png(image).size == (64, 64)
        assert metric(client, "sd_rejected_requests_total") == burst - QUEUE_SIZE
        assert metric(client, "sd_queue_depth") == 0
        # The queue recovered: the next request is admitted and served.
        assert client.post("/v1/txt2img", json={"prompt": "after", **SMALL}).status_code == 200


def _send_raw(url: str, body: dict) -> socket.socket:
    """A POST whose client we can vanish: the socket is closed without reading a reply."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/txt2img HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def test_a_client_disconnect_frees_its_queue_slot(cache_dir):
    gate = Gate()
    with gated_server(cache_dir, gate, queue_size=2, max_batch_size=1, batch_window_ms=0) as client:
        gate.close()
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(client.post, "/v1/txt2img", json={"prompt": "running", **SMALL})
            wait_until(gate.entered.is_set, "the first request to reach the pipeline")
            leaver = _send_raw(str(client.base_url), {"prompt": "leaver", **SMALL})
            wait_until(lambda: metric(client, "sd_queue_depth") == 2, "the leaver to be queued")
            assert client.post("/v1/txt2img", json={"prompt": "refused", **SMALL}).status_code == 429

            leaver.close()
            wait_until(lambda: metric(client, "sd_queue_depth") == 1, "the leaver's slot to be freed")
            admitted = pool.submit(client.post, "/v1/txt2img", json={"prompt": "admitted", **SMALL})
            wait_until(lambda: metric(client, "sd_queue_depth") == 2, "the next request to be admitted")
            gate.open()
            assert running.result().status_code == 200
            assert admitted.result().status_code == 200
        assert [p for [p] in gate.calls] == ["running", "admitted"], "the cancelled request never ran"
        assert metric(client, "sd_request_duration_seconds_count", route="/v1/txt2img", method="POST", status=499) == 1


def _fail_on(prompt: str):
    def fault(key, tasks):
        if any(task.prompt == prompt for task in tasks):
            raise RuntimeError("injected fault")

    return fault


def test_an_injected_fault_fails_only_its_batch(cache_dir):
    gate = Gate(fault=_fail_on("explode"))
    with gated_server(cache_dir, gate, max_batch_size=4, batch_window_ms=0) as client:
        gate.close()
        with ThreadPoolExecutor(4) as pool:
            blocker = pool.submit(client.post, "/v1/txt2img", json={"prompt": "fine", **SMALL, "steps": 2})
            wait_until(gate.entered.is_set, "the first request to reach the pipeline")
            # Same shape: these two share a batch, so both fail; the other shape runs apart.
            doomed = [pool.submit(client.post, "/v1/txt2img", json={"prompt": p, **SMALL}) for p in ("explode", "neighbour")]
            other = pool.submit(client.post, "/v1/txt2img", json={"prompt": "other", **SMALL, "width": 72})
            wait_until(lambda: metric(client, "sd_queue_waiting") == 3, "three queued requests")
            gate.open()
            assert blocker.result().status_code == 200
            for failed in doomed:
                response = failed.result()
                assert response.status_code == 500
                assert response.json()["error"] == "GenerationError"
                assert "RuntimeError" in response.json()["detail"]
            assert other.result().status_code == 200
        assert sorted(gate.batch_sizes) == [1, 1, 2]
        assert metric(client, "sd_failed_batches_total", kind="GenerationError") == 1
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/txt2img", json={"prompt": "still serving", **SMALL}).status_code == 200


def _out_of_memory_above(limit: int):
    def fault(key, tasks):
        if len(tasks) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return fault


def test_out_of_memory_retries_at_smaller_batches_and_gives_the_same_images(cache_dir):
    gate = Gate(fault=_out_of_memory_above(1))
    with gated_server(cache_dir, gate, max_batch_size=4, batch_window_ms=0) as client:
        response = client.post("/v1/txt2img", json={"prompt": "kites", "seed": 40, "batch_size": 4, **SMALL})
        assert response.status_code == 200, response.text
        assert gate.batch_sizes == [4, 2, 1, 1, 2, 1, 1]
        last_alone = client.post("/v1/txt2img", json={"prompt": "kites", "seed": 43, **SMALL})
        assert response.json()["images"][3] == last_alone.json()["images"][0]


def test_out_of_memory_at_one_image_is_a_clear_503(cache_dir):
    gate = Gate(fault=_out_of_memory_above(0))
    with gated_server(cache_dir, gate, max_batch_size=4, batch_window_ms=0) as client:
        response = client.post("/v1/txt2img", json={"prompt": "huge", "batch_size": 2, **SMALL})
        assert response.status_code == 503
        assert response.json()["error"] == "OutOfMemory"
        assert "smaller size" in response.json()["detail"]
        assert metric(client, "sd_failed_batches_total", kind="OutOfMemory") == 1
        assert client.get("/readyz").status_code == 200


def test_a_pipeline_call_stuck_without_progress_marks_readiness_wedged(cache_dir):
    gate = Gate()
    with gated_server(cache_dir, gate, stall_seconds=2) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        gate.close()  # the call hangs before its first step, as on a stuck GPU
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(client.post, "/v1/txt2img", json={"prompt": "stuck", **SMALL})
            wait_until(gate.entered.is_set, "the call to reach the pipeline")
            wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to turn false")
            assert client.get("/readyz").json()["status"] == "wedged"
            # The watchdog answers the stuck call's request (test_watchdog.py has the rest).
            assert stuck.result().status_code == 503
            assert stuck.result().json()["error"] == "Stalled"
            gate.open()
        # The call ended after all: the replica serves again.
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness to come back")
        assert client.post("/v1/txt2img", json={"prompt": "after", **SMALL}).status_code == 200


def test_stall_seconds_0_turns_the_wedge_check_off(cache_dir):
    gate = Gate()
    with gated_server(cache_dir, gate, stall_seconds=0) as client:
        gate.close()
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.post, "/v1/txt2img", json={"prompt": "held", **SMALL})
            wait_until(gate.entered.is_set, "the call to reach the pipeline")
            assert client.get("/readyz").json()["status"] == "ready"
            gate.open()
            assert held.result().status_code == 200


def test_every_dialect_counts_its_429s_in_the_rejected_metric(cache_dir):
    gate = Gate()
    with gated_server(cache_dir, gate, queue_size=1, max_batch_size=1) as client, ThreadPoolExecutor(1) as pool:
        gate.close()
        held = pool.submit(client.post, "/v1/txt2img", json={"prompt": "held", **SMALL})
        try:
            wait_until(gate.entered.is_set, "the held request to reach the pipeline")
            openai = client.post("/v1/images/generations", json={"prompt": "p", "size": "64x64"})
            assert openai.status_code == 429 and openai.json()["error"]["code"] == "queue_full"
            a1111 = client.post("/sdapi/v1/txt2img", json={"prompt": "p", **SMALL})
            assert a1111.status_code == 429 and a1111.json()["error"] == "QueueFull"
            assert metric(client, "sd_rejected_requests_total") == 2
        finally:
            gate.open()  # a failed assertion must not leave the held request waiting
        assert held.result().status_code == 200
