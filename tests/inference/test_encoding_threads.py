"""PNG encoding has its own threads: the responses of a batch that just ended, all encoding
at once, never hold up the decoding and preparing of the next requests (with as many
clients as --max-batch-size, those are the requests the GPU waits for)."""

from __future__ import annotations

import threading

import anyio

from inference.config import ServerSettings
from inference.service import generation
from inference.service.generation import GenerationService


def test_a_request_is_prepared_while_every_encoding_thread_is_busy():
    service = GenerationService(ServerSettings(), runtime=None, a1111=None)  # type: ignore[arg-type]
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_encode() -> str:
        started.release()
        release.wait(30)
        return "encoded"

    async def scenario() -> tuple[str, list[str]]:
        encoded: list[str] = []
        async with anyio.create_task_group() as group:
            async def encode_one() -> None:
                encoded.append(await service._encoding(slow_encode))

            for _ in range(generation.ENCODE_THREADS + 2):  # more than the encoding threads
                group.start_soon(encode_one)
            for _ in range(generation.ENCODE_THREADS):
                await anyio.to_thread.run_sync(started.acquire)
            try:
                with anyio.fail_after(10):  # queued behind the encodes, this would wait 30 s
                    prepared = await service._decoding(lambda: "prepared")
            finally:
                release.set()
        return prepared, encoded

    prepared, encoded = anyio.run(scenario)
    assert prepared == "prepared"
    assert encoded == ["encoded"] * (generation.ENCODE_THREADS + 2)
    assert generation.ENCODE_THREADS >= 2


def test_the_pngs_of_one_request_encode_at_the_same_time(cache_dir, monkeypatch):
    """A `batch_size: 4` request (StableStudio's default): each PNG is its own item on the
    encode threads. Two encodes must be in flight together to pass the barrier; one after
    the other, the first waits alone and the barrier breaks."""
    import httpx

    from inference.api.app import create_app

    from .conftest import decode_png, info_of
    from .server import ThreadedServer

    barrier = threading.Barrier(2, timeout=20)
    real_encode = generation.encode_png

    def meeting_encode(image, parameters):
        barrier.wait()
        return real_encode(image, parameters)

    from inference.service import describe

    monkeypatch.setattr(generation, "encode_png", meeting_encode)
    monkeypatch.setattr(describe, "encode_png", meeting_encode, raising=False)  # where it was encoded before
    app = create_app(ServerSettings(model="builtin:tiny", cache_dir=cache_dir))
    body = {"prompt": "four at once", "batch_size": 4, "steps": 2, "width": 64, "height": 64, "seed": 7}
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    images = [decode_png(data) for data in response.json()["images"]]
    info = info_of(response)
    assert len(images) == 4 and len({image.tobytes() for image in images}) == 4
    # In request order: each PNG carries its own image's infotext (seed 7, 8, 9, 10).
    assert [image.info["parameters"] for image in images] == info["infotexts"]
    assert [f"Seed: {seed}," in text for seed, text in zip(info["all_seeds"], info["infotexts"], strict=True)] == [True] * 4
