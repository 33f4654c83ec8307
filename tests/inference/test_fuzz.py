"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (issue 14).

schemathesis generates requests for every operation (valid ones and ones that break the
schema) and sends them, with credentials, to a real server on builtin:tiny with auth on.
A test fails on any 5xx, any response whose status or body the schema does not declare,
and any request slower than a bound derived from the work it asked for (steps x images x
pixels). The server's limits are small so that the work of any valid request is small,
and hypothesis' example counts keep the module near a minute on a small CPU.
"""

from __future__ import annotations

import base64
import json
import time

import bcrypt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .server import ServerProcess

USER, PASSWORD = "fuzzer", "fuzz-pass-123"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
MAX_STEPS, MAX_SIDE, MAX_IMAGES = 4, 128, 4
# Examples per operation: generation routes are the slow ones, and they are few.
EXAMPLES = 12
# A request's time bound: fixed costs (a request, PNG encoding, a cold path) plus the
# work it asked for, at a pessimistic rate for builtin:tiny on a loaded 2-core machine.
BASE_SECONDS = 5.0
SECONDS_PER_MEGAPIXEL_STEP = 20.0

FIGURES = {"requests": 0, "operations": set(), "2xx": 0, "5xx": 0, "schema_mismatches": 0}


@pytest.fixture(scope="module")
def fuzz_server(cache_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    with ServerProcess(
        "--auth-file", str(htpasswd), "--max-steps", str(MAX_STEPS), "--max-width", str(MAX_SIDE),
        "--max-height", str(MAX_SIDE), "--max-images-per-batch", "2", "--max-n-iter", "2",
        "--max-images-per-request", str(MAX_IMAGES), "--max-body-bytes", str(1024 * 1024),
        cache_dir=cache_dir, log_path=folder / "server.log",
    ) as server:
        yield server
    print(
        f"\nfuzz figures: {FIGURES['requests']} requests over {len(FIGURES['operations'])} operations "
        f"({FIGURES['2xx']} answered 2xx), {FIGURES['5xx']} 5xx, {FIGURES['schema_mismatches']} schema mismatches"
    )


def _openapi() -> dict:
    """The OpenAPI document the server serves, built by the same app factory (at import,
    so pytest can list one test per operation); `test_the_fuzzed_schema_is_the_served_one`
    checks that it is what the running server answers."""
    from inference.api.app import create_app
    from inference.config import ServerSettings

    return create_app(ServerSettings(model="builtin:tiny")).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_fuzzed_schema_is_the_served_one(fuzz_server):
    import httpx

    served = httpx.get(f"{fuzz_server.url}/openapi.json", headers=AUTH, timeout=30)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(OPENAPI))


def work_bound_seconds(body) -> float:
    """The time bound for a request's work: what it would run at most, from its body."""
    if not isinstance(body, dict):
        return BASE_SECONDS

    def number(name: str, default: float, limit: float) -> float:
        value = body.get(name, default)
        return min(float(value), limit) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    steps = number("steps", 20, MAX_STEPS)
    images = number("batch_size", 1, MAX_IMAGES) * number("n_iter", 1, MAX_IMAGES) * number("n", 1, MAX_IMAGES)
    megapixels = number("width", MAX_SIDE, MAX_SIDE) * number("height", MAX_SIDE, MAX_SIDE) / 1e6
    return BASE_SECONDS + SECONDS_PER_MEGAPIXEL_STEP * steps * min(images, MAX_IMAGES) * megapixels


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_within_its_schema_and_time(case, fuzz_server):
    started = time.monotonic()
    response = case.call(base_url=fuzz_server.url, headers=AUTH, timeout=120)
    elapsed = time.monotonic() - started
    FIGURES["requests"] += 1
    FIGURES["operations"].add(case.operation.label)
    FIGURES["2xx"] += 200 <= response.status_code < 300
    if response.status_code >= 500:
        FIGURES["5xx"] += 1
    try:
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        )
    except BaseException:  # schemathesis' FailureGroup is a BaseExceptionGroup
        if response.status_code < 500:
            FIGURES["schema_mismatches"] += 1
        raise
    bound = work_bound_seconds(case.body)
    assert elapsed < bound, (
        f"{case.method} {case.path} took {elapsed:.1f}s, over its bound of {bound:.1f}s: {json.dumps(case.body)[:300]}"
    )
