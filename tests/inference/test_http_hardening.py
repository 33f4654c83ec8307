"""Issue 14, the HTTP side: what a client says (Host, X-Forwarded-For, Origin) is not
trusted, one client cannot grow the options store, browsers get security headers and a
self-hosted /docs, and slow or idle clients cannot hold the replica's connections."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from inference.api.security import CONTENT_SECURITY_POLICY

from .server import REPO, ServerProcess, free_port, wait_ready

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
MAX_CONNECTIONS = 64
SPOOFED_CLIENT = "203.0.113.9"


@pytest.fixture(scope="module")
def server(cache_dir, tmp_path_factory):
    with ServerProcess(
        "--cors-origins", "*", "--header-timeout-seconds", str(HEADER_TIMEOUT),
        "--body-timeout-seconds", str(BODY_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
        cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("hardening") / "server.log",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def proxied_server(cache_dir, tmp_path_factory):
    """Behind a proxy at 127.0.0.1, reached by clients at a public URL."""
    with ServerProcess(
        "--trusted-proxies", "127.0.0.1", "--public-url", "https://sd.example.com/api/",
        cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("proxied") / "server.log",
    ) as process:
        yield process


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- finding 5: the client's Host and X-Forwarded-For are not believed -------------------


def _openai_url(base: str, headers: dict[str, str]) -> str:
    body = {"prompt": "a kite", "size": "64x64", "response_format": "url", "steps": 1}
    response = httpx.post(f"{base}/v1/images/generations", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["url"]


def test_image_links_never_come_from_the_host_header(server, proxied_server):
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    url = _openai_url(server.url, evil)
    # No --public-url: the address the connection arrived on (this test's 127.0.0.1:port).
    assert url.startswith(f"{server.url}/v1/images/files/") and "evil" not in url
    assert httpx.get(url).headers["content-type"] == "image/png"
    public = _openai_url(proxied_server.url, evil)
    assert re.fullmatch(r"https://sd\.example\.com/api/v1/images/files/[^/]+\.png", public), public


def test_forwarded_for_is_believed_only_from_trusted_proxies(server, proxied_server):
    marker = "/healthz?forwarded-check"
    for process in (server, proxied_server):
        assert httpx.get(process.url + marker, headers={"X-Forwarded-For": SPOOFED_CLIENT}).status_code == 200
    untrusted = [line for line in server.log().splitlines() if "forwarded-check" in line]
    trusted = [line for line in proxied_server.log().splitlines() if "forwarded-check" in line]
    assert untrusted and all("127.0.0.1:" in line and SPOOFED_CLIENT not in line for line in untrusted), untrusted
    assert trusted and all(SPOOFED_CLIENT in line for line in trusted), trusted


# -- finding 4: the options store is bounded ----------------------------------------------


def test_options_store_refuses_unbounded_keys(server):
    before = _rss_bytes(server.process.pid)
    # 50,000 keys parse (a body may hold 100,000 values) and then do not fit the store.
    many = {f"made_up_option_{number}": number for number in range(50_000)}
    refused = httpx.post(f"{server.url}/sdapi/v1/options", json=many, timeout=120)
    assert refused.status_code == 422
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "made_up_option_1024"] and "at most 1024 options" in detail["msg"]
    # 200,000 keys are refused before they are parsed into a dict at all.
    more = {f"made_up_option_{number}": number for number in range(200_000)}
    too_many = httpx.post(f"{server.url}/sdapi/v1/options", json=more, timeout=120)
    assert too_many.status_code == 413 and "100000" in too_many.text.replace(",", "")
    huge_value = httpx.post(f"{server.url}/sdapi/v1/options", json={"notes": "x" * 100_000})
    assert huge_value.status_code == 422 and huge_value.json()["detail"][0]["loc"] == ["body", "notes"]
    # Within the count but past the total size: 20 values of 60 KB are 1.2 MB.
    bulky = {f"bulky_{number}": "y" * 60_000 for number in range(20)}
    too_much = httpx.post(f"{server.url}/sdapi/v1/options", json=bulky, timeout=60)
    assert too_much.status_code == 422 and "bytes" in too_much.json()["detail"][0]["msg"]

    options = httpx.get(f"{server.url}/sdapi/v1/options")
    assert options.status_code == 200 and len(options.content) < 64 * 1024
    assert not any(key.startswith(("made_up_option_", "bulky_")) for key in options.json())
    # A refused body changes nothing; a reasonable one is stored and echoed.
    assert httpx.post(f"{server.url}/sdapi/v1/options", json={"samples_format": "jpg", "my_note": "kept"}).status_code == 200
    echoed = httpx.get(f"{server.url}/sdapi/v1/options").json()
    assert echoed["samples_format"] == "jpg" and echoed["my_note"] == "kept"
    # Parsing 50,000 keys costs memory while the request runs; none of it is kept.
    assert _rss_bytes(server.process.pid) - before < 150 * 1024 * 1024


# -- finding 6: CORS '*' never allows credentials -----------------------------------------


def test_cors_wildcard_never_allows_credentials(server):
    origin = "https://any-site.example"
    preflight = httpx.options(
        f"{server.url}/sdapi/v1/txt2img",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    credentialed = httpx.get(
        f"{server.url}/sdapi/v1/options",
        headers={"Origin": origin, "Cookie": "session=1", "Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    )
    assert credentialed.status_code == 200
    assert credentialed.headers["access-control-allow-origin"] == "*"  # readable only without credentials
    assert "access-control-allow-credentials" not in credentialed.headers


# -- finding 7: security headers, and /docs from this server ------------------------------


def _assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/[^"]+)"', html)


def test_pages_and_assets_carry_security_headers(server):
    page = httpx.get(server.url + "/")
    docs = httpx.get(server.url + "/docs")
    paths = ["/", "/docs", "/openapi.json", "/healthz", *_assets_of(page.text), *_assets_of(docs.text)]
    assert any(path.startswith("/docs-assets/") for path in paths) and any(path.startswith("/web/") for path in paths)
    for path in paths:
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, path
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_docs_load_nothing_from_other_hosts_and_allow_only_their_own_inline_script(server):
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200
    assert not re.search(r'(?:src|href)="(?:https?:)?//', docs.text), "a CDN reference"
    policy = docs.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert scripts, "Swagger's init script"
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    bundle = httpx.get(server.url + "/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content
    assert httpx.get(server.url + "/redoc").status_code == 404  # ReDoc needs inline styles: not served


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium missing: `make test` installs it")
def test_docs_and_playground_render_offline_under_the_policy(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            foreign: list[str] = []
            violations: list[str] = []

            def only_this_server(route):
                if route.request.url.startswith(server.url):
                    route.continue_()
                else:  # air-gapped: nothing else answers
                    foreign.append(route.request.url)
                    route.abort()

            page.route("**/*", only_this_server)
            page.on(
                "console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None
            )
            page.goto(server.url + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
            page.wait_for_selector('.opblock-summary-path[data-path="/sdapi/v1/txt2img"]', state="attached", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "docs.png"))
            page.goto(server.url + "/")
            page.wait_for_load_state("networkidle")
            assert not foreign, foreign
            assert not violations, violations
        finally:
            browser.close()


# -- finding 8: slow and idle clients ------------------------------------------------------


def _healthz_latencies(url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.get(f"{url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    return latencies


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if still open after `seconds`."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_half_sent_requests_are_closed_and_healthz_keeps_answering(server):
    host, port = "127.0.0.1", server.port
    headers_only = [socket.create_connection((host, port)) for _ in range(20)]
    for sock in headers_only:
        sock.sendall(b"POST /v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    body_started = [socket.create_connection((host, port)) for _ in range(10)]
    for sock in body_started:
        sock.sendall(
            b'POST /sdapi/v1/options HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":'
        )
    started = time.monotonic()
    latencies = _healthz_latencies(server.url, 20)
    assert statistics.median(latencies) < 0.1, latencies
    try:
        for sock in headers_only + body_started:
            answer = _closed_within(sock, HEADER_TIMEOUT + BODY_TIMEOUT + 5 - (time.monotonic() - started))
            assert answer is not None, "a half-sent request is still open"
            assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
    finally:
        for sock in headers_only + body_started:
            sock.close()
    assert time.monotonic() - started < BODY_TIMEOUT + 5


def test_connections_past_the_bound_shed_the_longest_waiting(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS + 30)]
    try:
        time.sleep(0.5)
        # A new client still gets in: it pushes out the connection that waited longest.
        assert max(_healthz_latencies(server.url, 5)) < 1
        still_open = sum(_closed_within(sock, 0.05) is None for sock in idle)
        assert still_open <= MAX_CONNECTIONS - 1, still_open
        assert _closed_within(idle[0], 0.5) == b""  # the oldest went first, quietly
    finally:
        for sock in idle:
            sock.close()


def test_an_open_file_storm_is_logged_once_and_the_server_recovers(cache_dir, tmp_path):
    """300 half-sent requests against an open-file limit of 256 (the issue's numbers)."""
    limit = 256
    port = free_port()
    log_path = tmp_path / "server.log"

    # The limit is set in the child before it becomes the server (exec keeps it).
    command = [
        sys.executable, "-c",
        (
            f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
            "os.execv(sys.executable, [sys.executable, '-m', 'inference', 'serve', *sys.argv[1:]])"
        ),
        "--port", str(port), "--cache-dir", str(cache_dir), "--header-timeout-seconds", "3",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        sockets: list[socket.socket] = []
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process=process)
            for _ in range(300):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sockets.append(sock)
            time.sleep(0.5)
            for sock in sockets:
                try:
                    sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass
            time.sleep(5)  # past the header timeout: the half-sent ones are closed
            assert process.poll() is None
            assert max(_healthz_latencies(url, 5)) < 2
        finally:
            for sock in sockets:
                sock.close()
            process.terminate()
            process.wait(30)
    text = log_path.read_text(errors="replace")
    assert "open-file limit is 256: serving at most 192 connections" in text
    storm_lines = [line for line in text.splitlines() if "Too many open files" in line or "out of system resource" in line]
    assert len(storm_lines) <= 4, f"{len(storm_lines)} lines, e.g. {storm_lines[:3]}"
    assert len(text.splitlines()) < 1000


def test_accept_error_storms_are_logged_once_a_minute():
    import logging

    from inference.api.connections import ACCEPT_ERRORS, RateLimitedLogFilter

    records = []
    logger = logging.getLogger("test-accept-storm")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.addFilter(RateLimitedLogFilter(ACCEPT_ERRORS, interval=60))
    error = OSError(24, "Too many open files")
    for _ in range(5000):  # asyncio's default handler: one error record per failed accept()
        logger.error("socket.accept() out of system resource\nexception: %r", error, exc_info=(OSError, error, None))
    logger.error("something else")
    assert [record.getMessage().splitlines()[0] for record in records] == [
        "socket.accept() out of system resource", "something else",
    ]
    assert records[0].exc_info is None  # one line, not a traceback
