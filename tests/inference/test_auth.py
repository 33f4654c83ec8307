"""HTTP Basic auth from an htpasswd file: every API route is gated, operations stay open,
and neither the password nor the HF token ever reaches the log or a response."""

from __future__ import annotations

import asyncio
import base64
import secrets
import statistics
import threading
import time

import bcrypt
import httpx
import pytest

from inference.api.auth import (
    OPEN_PATHS,
    BasicAuth,
    HtpasswdError,
    Verdict,
    bcrypt_cost,
    load_htpasswd,
)

from .server import ServerProcess
from .serving_helpers import scrape

PASSWORD = "correct horse battery staple"
HF_TOKEN = "hf_NeverLogThisTokenValue123"


@pytest.fixture(scope="module")
def auth_server(cache_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth")
    htpasswd = folder / "htpasswd"
    # $2a$ is what pulumi_random's bcrypt_hash writes; $2y$ is Apache htpasswd -B.
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    other = bcrypt.hashpw(b"second-user-pass", bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"# users\nadmin:{'$2a$' + hashed[4:]}\nartist:{'$2y$' + other[4:]}\n")
    with ServerProcess(
        "--auth-file", str(htpasswd), cache_dir=cache_dir, log_path=folder / "server.log", env={"HF_TOKEN": HF_TOKEN}
    ) as server:
        yield server


def _routes(server) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json", auth=("admin", PASSWORD)).json()
    routes = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    assert ("POST", "/v1/txt2img") in routes
    return routes + [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/"), ("GET", "/no-such-route")]


def _call(server, method: str, path: str, auth=None, headers=None) -> httpx.Response:
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1} if method == "POST" else None
    return httpx.request(method, server.url + path, json=body, auth=auth, headers=headers, timeout=60)


def test_every_api_route_refuses_missing_or_wrong_credentials(auth_server):
    for method, path in _routes(auth_server):
        if path in OPEN_PATHS:
            continue
        for auth in (None, ("admin", "wrong"), ("nobody", PASSWORD)):
            response = _call(auth_server, method, path, auth=auth)
            assert response.status_code == 401, (method, path, auth, response.status_code)
            assert response.headers["www-authenticate"].startswith('Basic realm="stable-diffusion"')
            assert response.json()["error"] == "Unauthorized"
        garbage = _call(auth_server, method, path, headers={"Authorization": "Basic !!!notbase64"})
        assert garbage.status_code == 401


def test_every_api_route_accepts_the_right_credentials(auth_server):
    for method, path in _routes(auth_server):
        response = _call(auth_server, method, path, auth=("admin", PASSWORD))
        assert response.status_code != 401, (method, path)
    generated = _call(auth_server, "POST", "/v1/txt2img", auth=("artist", "second-user-pass"))
    assert generated.status_code == 200 and len(generated.json()["images"]) == 1


def test_refused_requests_are_counted_under_the_route_they_asked_for(auth_server):
    """The auth layer answers before routing; the request metric still names the route's
    template (never the raw path), and a path no route matches stays `unmatched`."""

    def count(samples, route: str, method: str) -> float:
        labels = frozenset({("route", route), ("method", method), ("status", "401")})
        return samples.get(("sd_request_duration_seconds_count", labels), 0.0)

    random_path = f"/nope/{secrets.token_hex(8)}"
    model_path = f"/v1/models/{secrets.token_hex(8)}"
    with httpx.Client(base_url=auth_server.url, timeout=60) as client:
        before = scrape(client)
        assert client.post("/sdapi/v1/txt2img", json={"prompt": "x"}).status_code == 401
        assert client.get(model_path).status_code == 401
        assert client.get(random_path).status_code == 401
        after = scrape(client)
    assert count(after, "/sdapi/v1/txt2img", "POST") == count(before, "/sdapi/v1/txt2img", "POST") + 1
    assert count(after, "/v1/models/{model_id:path}", "GET") == count(before, "/v1/models/{model_id:path}", "GET") + 1
    assert count(after, "unmatched", "GET") == count(before, "unmatched", "GET") + 1
    routes = {value for (_, labels) in after for name, value in labels if name == "route"}
    assert not routes & {random_path, model_path}


def test_openai_client_authenticates_with_user_colon_password_as_api_key(auth_server):
    import openai

    good = openai.OpenAI(base_url=f"{auth_server.url}/v1", api_key=f"admin:{PASSWORD}", max_retries=0)
    result = good.images.generate(prompt="a kite", size="64x64", response_format="b64_json")
    assert base64.b64decode(result.data[0].b64_json)[:4] == b"\x89PNG"
    bad = openai.OpenAI(base_url=f"{auth_server.url}/v1", api_key="admin:wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(f"{auth_server.url}/v1/models", headers={"Authorization": "Bearer " + PASSWORD}).status_code == 401


def test_health_and_metrics_stay_open(auth_server):
    assert httpx.get(f"{auth_server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{auth_server.url}/readyz").status_code == 200
    assert "sd_queue_depth" in httpx.get(f"{auth_server.url}/metrics").text


def test_openapi_is_served_to_authenticated_users_only(auth_server):
    assert httpx.get(f"{auth_server.url}/openapi.json").status_code == 401
    assert httpx.get(f"{auth_server.url}/openapi.json", auth=("admin", PASSWORD)).json()["paths"]


def test_no_secret_reaches_the_log_or_a_response(auth_server):
    # A failing request carrying the password, and an error response, must not echo it.
    wrong = _call(auth_server, "POST", "/v1/txt2img", auth=("admin", PASSWORD + "x"))
    bad = _call(auth_server, "POST", "/v1/txt2img", auth=("admin", PASSWORD), headers={"X-Debug": HF_TOKEN})
    for response in (wrong, bad):
        assert PASSWORD not in response.text and HF_TOKEN not in response.text
    log = auth_server.log()
    assert "POST /v1/txt2img" in log  # the log is really being written
    for secret in (PASSWORD, HF_TOKEN, base64.b64encode(f"admin:{PASSWORD}".encode()).decode(), "$2a$", "$2b$"):
        assert secret not in log


def test_htpasswd_errors_name_the_line_but_not_its_content(tmp_path):
    path = tmp_path / "htpasswd"
    path.write_text("admin:{SHA}secretsha1value=\n")
    with pytest.raises(HtpasswdError) as error:
        load_htpasswd(path)
    assert "line 1" in str(error.value) and "secretsha1value" not in str(error.value)
    path.write_text("\n# only comments\n")
    with pytest.raises(HtpasswdError, match="no users"):
        load_htpasswd(path)


# -- issue 14: bcrypt can neither starve the event loop nor fail nor leak user names -----


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_long_passwords_and_huge_authorization_headers_are_401_not_500(auth_server):
    # bcrypt 5 raises on passwords over 72 bytes; a real user's name makes it reach bcrypt.
    for password in (PASSWORD + "x" * 60, "p" * 73, "é" * 100):
        response = _call(auth_server, "GET", "/sdapi/v1/options", headers={"Authorization": _basic("admin", password)})
        assert response.status_code == 401, (len(password), response.status_code)
        assert response.headers["www-authenticate"].startswith('Basic realm="stable-diffusion"')
    for size in (8_000, 30_000, 60_000):
        header = _basic("admin", "x" * size)
        response = _call(auth_server, "GET", "/sdapi/v1/options", headers={"Authorization": header})
        assert response.status_code == 401 and response.json()["error"] == "Unauthorized", size
    # Past the 64 KiB request-head limit h11 refuses the request itself: a 400 (or the
    # connection closed while the client still writes), never a 5xx.
    try:
        status = _call(
            auth_server, "GET", "/sdapi/v1/options", headers={"Authorization": _basic("admin", "x" * 100_000)}
        ).status_code
    except httpx.TransportError:
        status = None
    assert status in (400, 401, None)
    assert _call(auth_server, "GET", "/sdapi/v1/options", auth=("admin", PASSWORD)).status_code == 200


def test_unknown_users_cost_as_much_as_known_ones():
    # htpasswd -B's default cost is 5; the dummy hash must not be slower (or faster).
    users = {"known": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=5))}
    auth = BasicAuth(users)
    assert bcrypt_cost(auth._dummy_hash) == 5

    def median_seconds(user: str) -> float:
        async def timed() -> float:
            started = time.perf_counter()
            assert await auth.check(_basic(user, "wrong")) is Verdict.DENIED
            return time.perf_counter() - started

        return statistics.median(asyncio.run(timed()) for _ in range(15))

    known, unknown = median_seconds("known"), median_seconds("nobody")
    # Before, unknown users were checked at cost 10: 30 times slower than a cost-5 user.
    assert unknown < 3 * known + 0.01, (known, unknown)
    auth.close()


def test_credential_checks_are_bounded_and_successes_cached():
    users = {"known": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=11))}
    auth = BasicAuth(users, threads=1, max_pending_checks=2)

    async def scenario() -> tuple[list[Verdict], float, Verdict, Verdict]:
        assert await auth.check(_basic("known", "right")) is Verdict.ALLOWED  # now cached
        wrong = [asyncio.ensure_future(auth.check(_basic("known", f"wrong{i}"))) for i in range(5)]
        await asyncio.sleep(0)  # all five have reached the admission check
        started = time.perf_counter()
        cached = await auth.check(_basic("known", "right"))  # no bcrypt: not held up by the flood
        cached_seconds = time.perf_counter() - started
        uncached_during_flood = await auth.check(_basic("known", "another-wrong"))
        return list(await asyncio.gather(*wrong)), cached_seconds, cached, uncached_during_flood

    verdicts, cached_seconds, cached, during_flood = asyncio.run(scenario())
    assert verdicts == [Verdict.DENIED, Verdict.DENIED, Verdict.BUSY, Verdict.BUSY, Verdict.BUSY]
    assert cached is Verdict.ALLOWED and cached_seconds < 0.01
    assert during_flood is Verdict.BUSY  # answered at once, without hashing
    auth.close()


@pytest.fixture(scope="module")
def costly_auth_server(cache_dir, tmp_path_factory):
    """Auth at bcrypt cost 10 (about 0.1 s a check here), as a production htpasswd has."""
    folder = tmp_path_factory.mktemp("costly-auth")
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"admin:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()}\n")
    with ServerProcess("--auth-file", str(htpasswd), cache_dir=cache_dir, log_path=folder / "server.log") as server:
        yield server


def test_a_wrong_password_flood_does_not_starve_healthz(costly_auth_server):
    url = costly_auth_server.url
    stop = threading.Event()
    statuses: list[int] = []

    def flood(number: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.get(f"{url}/sdapi/v1/options", auth=("admin", f"wrong-{number}")).status_code)

    clients = [threading.Thread(target=flood, args=(n,)) for n in range(6)]
    for thread in clients:
        thread.start()
    latencies = []
    try:
        time.sleep(0.5)
        with httpx.Client(timeout=30) as probe:
            for _ in range(30):
                started = time.perf_counter()
                assert probe.get(f"{url}/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    # Before: every check held the event loop for the length of a bcrypt (p50 ~0.5 s here).
    assert statistics.median(latencies) < 0.1, sorted(latencies)
    assert statuses and set(statuses) <= {401, 429}, set(statuses)
    assert statuses.count(401) >= 6  # the checks really ran
    assert httpx.get(f"{url}/sdapi/v1/options", auth=("admin", PASSWORD), timeout=30).status_code == 200
