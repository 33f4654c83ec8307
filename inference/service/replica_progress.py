"""A1111's progress, interrupt and skip behind several replicas.

A1111 is one process: `GET /sdapi/v1/progress` reports "the" running job and `POST
/sdapi/v1/interrupt` / `skip` stop it. Behind a Service a client's poll or its interrupt
lands on any replica, most often not the one running its job. So, with peers
(service/peers.py), and unless a request carries `LOCAL_ONLY_HEADER`:

- progress: a replica that runs a pipeline call answers with its own (no peer is asked:
  the common case stays one local read). An idle one asks every other replica at once
  (`GET` with `LOCAL_ONLY_HEADER` and the client's `Authorization`) within
  `PEER_CONTROL_TIMEOUT_SECONDS` in all, and answers with the running job of the peer whose
  job started first (the smallest `job_timestamp`; on a tie, the first by address). A peer
  that fails, is slow or answers anything but a progress answer is skipped. When no
  peer runs a job either, the answer is this replica's idle one, with `interrupted` /
  `skipped` set when any replica that answered reports its last job so.
- interrupt and skip: applied here first, then sent to every other replica at once (the
  same header and credentials); the answer waits until they answered or the same bound
  passed. As A1111's stop every user's running job on its one server, these stop the
  running batch on every replica.
"""

from __future__ import annotations

import logging
import re
import time

from pydantic import BaseModel, Field, ValidationError

from .options import A1111State, ProgressReport
from .peers import Peers

log = logging.getLogger(__name__)

# The most a progress poll, interrupt or skip waits for the other replicas, in all: a
# playground polls progress every second or so, and an idle replica asks its peers on
# every poll, so a hung peer must not hold a poll longer than about one poll's period.
PEER_CONTROL_TIMEOUT_SECONDS = 1.0
# A progress answer is a few hundred bytes (no live previews); interrupt's is `{}`, skip's `null`.
_PROGRESS_ANSWER_BYTES = 64 * 1024
_CONTROL_ANSWER_BYTES = 1024
# A1111's job_timestamp: the job's start, "%Y%m%d%H%M%S" (so text order is time order).
_JOB_TIMESTAMP = re.compile(r"^\d{14}$")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(description="0..1 of the running batch")
    eta_relative: float = Field(description="estimated seconds left")
    state: ProgressState
    current_image: str | None = Field(default=None, description="live previews are not produced: always null")
    textinfo: str | None = None


def progress_response(report: ProgressReport) -> ProgressResponse:
    """A1111's progress answer for this replica's report."""
    current = report.running
    if current is None:
        return ProgressResponse(
            progress=0.0,
            eta_relative=0.0,
            state=ProgressState(interrupted=report.interrupted, skipped=report.skipped),
            textinfo=f"Waiting: {report.queued} request(s) queued" if report.queued else None,
        )
    fraction = current.fraction
    elapsed = max(0.0, time.time() - current.started_at)
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    return ProgressResponse(
        progress=round(fraction, 4),
        eta_relative=round(eta, 3),
        state=ProgressState(
            interrupted=report.interrupted,
            skipped=report.skipped,
            job="generate",
            job_count=current.job_count,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(current.started_at)),
            sampling_step=current.step,
            sampling_steps=current.total_steps,
        ),
        textinfo=f"Step {current.step}/{current.total_steps}, {current.images_total} image(s) in this batch",
    )


def _running(answer: ProgressResponse) -> bool:
    return answer.state.job != ""


class ReplicaProgress:
    """`/sdapi/v1/progress`, `interrupt` and `skip` over every replica."""

    def __init__(
        self,
        state: A1111State,
        peers: Peers | None,
        *,
        progress_path: str,
        interrupt_path: str,
        skip_path: str,
        timeout_seconds: float = PEER_CONTROL_TIMEOUT_SECONDS,
    ):
        self.state = state
        self.peers = peers
        self.progress_path = progress_path
        self.interrupt_path = interrupt_path
        self.skip_path = skip_path
        self.timeout_seconds = timeout_seconds

    async def progress(self, *, authorization: str | None, local_only: bool) -> ProgressResponse:
        own = progress_response(self.state.progress())
        if _running(own) or local_only or self.peers is None:
            return own
        answers = await self._progress_of_others(authorization)
        running = [answer for answer in answers if _running(answer)]
        if running:
            # The oldest job first; min() keeps the first of equals, and peers come in address order.
            return min(running, key=lambda answer: answer.state.job_timestamp)
        own.state.interrupted = own.state.interrupted or any(a.state.interrupted for a in answers)
        own.state.skipped = own.state.skipped or any(a.state.skipped for a in answers)
        return own

    async def interrupt(self, *, authorization: str | None, local_only: bool) -> None:
        self.state.interrupt()
        if not local_only:
            await self._tell_others(self.interrupt_path, "interrupt", authorization)

    async def skip(self, *, authorization: str | None, local_only: bool) -> None:
        self.state.skip()
        if not local_only:
            await self._tell_others(self.skip_path, "skip", authorization)

    async def _tell_others(self, path: str, what: str, authorization: str | None) -> None:
        if self.peers is None:
            return
        answers = await self.peers.fetch_from_others(
            "POST", path, authorization=authorization, max_bytes=_CONTROL_ANSWER_BYTES,
            content_type="application/json", what=what, timeout_seconds=self.timeout_seconds,
        )
        for peer, answer in answers:
            if answer is None:
                log.warning("peers: %s did not confirm the %s; its running batch may go on", peer, what)

    async def _progress_of_others(self, authorization: str | None) -> list[ProgressResponse]:
        """The progress answer of every other replica that gave one in time, in address order."""
        peers = self.peers
        assert peers is not None
        answers = await peers.fetch_from_others(
            "GET", self.progress_path, authorization=authorization, max_bytes=_PROGRESS_ANSWER_BYTES,
            content_type="application/json", what="progress", timeout_seconds=self.timeout_seconds,
        )
        found = []
        for peer, body in answers:
            if body is None:
                continue
            answer = _progress_of(body)
            if answer is None:
                log.warning("peers: progress from %s not used: not a progress answer", peer)
            else:
                found.append(answer)
        return found


def _progress_of(body: bytes) -> ProgressResponse | None:
    """A peer's progress answer, or None when it is not one (a running job's start must be
    a job_timestamp, as the choice between peers compares them)."""
    try:
        answer = ProgressResponse.model_validate_json(body)
    except ValidationError:
        return None
    if _running(answer) and not _JOB_TIMESTAMP.match(answer.state.job_timestamp):
        return None
    return answer
