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
