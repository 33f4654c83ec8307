"""Watching a server while a hostile request runs: /healthz latency and process memory.

`Watch` polls `/healthz` (a fresh connection each time, as the kubelet's probe makes) and
the server process's resident memory from a thread, so a test can assert that the event
loop kept answering and memory stayed bounded while the request ran.
"""

from __future__ import annotations

import threading
import time

import httpx
import psutil

HEALTHZ_BUDGET_S = 0.1  # the liveness probe must never see a slower answer (on an idle machine)
POLL_EVERY_S = 0.02


class Watch:
    def __init__(self, base_url: str, pid: int):
        self.base_url = base_url
        self.process = psutil.Process(pid)
        self.baseline_rss = self.process.memory_info().rss
        self.peak_rss = self.baseline_rss
        self.slowest_healthz = 0.0
        self.healthz_failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "Watch":
        self._thread.start()
        while self.polls == 0:  # at least one answer before the hostile request goes out
            time.sleep(0.005)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def rss_growth(self) -> int:
        return self.peak_rss - self.baseline_rss

    def _poll(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status = httpx.get(f"{self.base_url}/healthz", timeout=5).status_code
                if status != 200:
                    self.healthz_failures.append(f"status {status}")
            except httpx.HTTPError as error:
                self.healthz_failures.append(type(error).__name__)
            self.slowest_healthz = max(self.slowest_healthz, time.perf_counter() - started)
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self.polls += 1
            self._stop.wait(POLL_EVERY_S)


def healthz_budget(base_url: str, pid: int, normal_request) -> float:
    """HEALTHZ_BUDGET_S, or on a machine so loaded that /healthz is slower than that while
    the server does nothing hostile (three normal generations), twice the slowest answer
    seen then: the hostile tests assert that a request delays /healthz no more than
    ordinary work does on this machine, and the seconds-long stalls they guard against
    (10 s for 40 TIFFs, 2.7 s for a body of a million keys) stay far above."""
    with Watch(base_url, pid) as watch:
        for _ in range(3):
            normal_request()
        time.sleep(0.5)
    return max(HEALTHZ_BUDGET_S, 2 * watch.slowest_healthz)
