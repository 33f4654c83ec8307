"""HTTP Basic auth from an htpasswd file: every API route is gated, operations stay open,
and neither the password nor the HF token ever reaches the log or a response."""

from __future__ import annotations

import base64

import bcrypt
import httpx
import pytest

from inference.api.auth import OPEN_PATHS, HtpasswdError, load_htpasswd

from .server import ServerProcess

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
