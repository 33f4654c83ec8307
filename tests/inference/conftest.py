from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from .server import ServerProcess


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache for the session: the builtin models are written once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_server(cache_dir, tmp_path_factory):
    with ServerProcess(
        "--model", "builtin:tiny", "--max-steps", "50", "--max-width", "256", "--max-height", "256",
        "--max-images-per-batch", "4", "--max-n-iter", "3", "--max-prompt-length", "300",
        "--max-body-bytes", str(256 * 1024),
        cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("logs") / "tiny.log",
    ) as server:
        yield server


@pytest.fixture(scope="session")
def sdxl_server(cache_dir, tmp_path_factory):
    with ServerProcess(
        "--model", "builtin:tiny-sdxl", cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("logs") / "sdxl.log"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def tiny(tiny_server):
    with httpx.Client(base_url=tiny_server.url, timeout=120) as client:
        yield client


def decode_png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    assert image.format == "PNG"
    return image


def info_of(response: httpx.Response) -> dict:
    body = response.json()
    assert isinstance(body["info"], str), "info is a JSON string, as A1111 returns it"
    return json.loads(body["info"])


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def error_text(response: httpx.Response) -> str:
    """Every message in an error body, flattened (FastAPI 422 or our error shape)."""
    body = response.json()
    detail = body.get("detail")
    if isinstance(detail, list):
        return " | ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    return str(detail)


# -- issue 4: a server whose generations are slow enough to watch and interrupt --------

STEP_DELAY_SECONDS = 0.1


def slow_steps(run, seconds: float = STEP_DELAY_SECONDS):
    """Wraps the batch runner so each denoising step sleeps `seconds` (no CPU) before
    reporting (`create_app`'s `wrap_runner`)."""
    import time

    def slowed(key, tasks, on_step):
        def delayed(step, total):
            time.sleep(seconds)
            return on_step(step, total)

        return run(key, tasks, delayed)

    return slowed


@pytest.fixture(scope="session")
def slow_server(cache_dir):
    """builtin:tiny served by uvicorn in this process, every step slowed by
    STEP_DELAY_SECONDS, with CORS open to a StableStudio dev origin."""
    from inference.api.app import create_app
    from inference.config import ServerSettings

    from .server import ThreadedServer

    settings = ServerSettings(
        model="builtin:tiny", cache_dir=cache_dir, cors_origins=["http://localhost:3000"], history_size=8,
        image_url_ttl_seconds=60,
    )
    with ThreadedServer(create_app(settings, wrap_runner=slow_steps)) as server:
        yield server
