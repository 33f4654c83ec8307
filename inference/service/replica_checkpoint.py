"""The current checkpoint (A1111's `sd_model_checkpoint`), kept the same on every replica.

Clients such as StableStudio's webui plugin, A1111 scripts and `webuiapi` read `GET
/sdapi/v1/options`, switch with `POST /sdapi/v1/options {"sd_model_checkpoint": ...}`, then
generate without naming a model; behind a Service each of those calls may reach another
replica. So, with peers (service/peers.py):

- a switch is applied here first (its validation errors as before, nothing forwarded
  then), then sent to every other replica at once as `{"sd_model_checkpoint": <its
  name>}` with `LOCAL_ONLY_HEADER` (so it goes no further) and the client's
  `Authorization`; the answer waits until they all answered or
  `--peer-switch-timeout-seconds` passed, as A1111 answers once the checkpoint is loaded.
  Each replica answers once it has loaded and warmed the checkpoint (Runtime.select_model),
  which on a GPU with an empty compile cache can outlast the timeout. A peer that fails or
  is slow is logged and the client still gets A1111's answer; a slow peer is not stopped
  by the forwarder giving up on it: it switches once warm (meanwhile its requests that name
  no checkpoint get the one it had). Only
  the checkpoint is sent: the other options are stored to be echoed, per replica, and a
  peer's bounds on them could refuse what this replica stored.
- a replica that starts (scale-up, restart) asks the others, after its default checkpoint
  is loaded and warmed and before it is ready, for their current checkpoint (`GET` with
  `LOCAL_ONLY_HEADER` and the replicas' shared token: no client credentials exist then)
  and adopts the one most of them report; a tie, no answer or names it does not offer
  keep the default. A switch a peer forwards while it starts is kept and wins over what
  the peers reported (it is newer). The asking takes at most the peers' timeout; the
  adopted checkpoint is then loaded and warmed (Runtime.adopt_model) before ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..errors import InvalidInput
from .options import MAX_STORED_OPTIONS_BYTES, A1111State
from .peers import Peers

log = logging.getLogger(__name__)

# A peer's answer to the switch is `null`; to GET options its options, stored ones included.
_SWITCH_ANSWER_BYTES = 1024
_OPTIONS_ANSWER_BYTES = 2 * MAX_STORED_OPTIONS_BYTES + 64 * 1024


def majority_checkpoint(reported: Iterable[str], default: str, offered: Iterable[str]) -> str:
    """The checkpoint most peers report, among those `offered` here; `default` when none
    is reported or the most reported ones tie."""
    known = set(offered)
    counts = Counter(name for name in reported if name in known).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return default
    return counts[0][0]


class ReplicaCheckpoint:
    """`POST /sdapi/v1/options` for every replica, and adopting the others' checkpoint at start."""

    def __init__(self, state: A1111State, peers: Peers | None, *, path: str, switch_timeout_seconds: float):
        self.state = state
        self.runtime = state.runtime
        self.peers = peers
        self.path = path  # where a peer serves GET and POST options
        self.switch_timeout_seconds = switch_timeout_seconds
        # A switch a peer forwarded before this replica was ready: adopted at start.
        self._forwarded_while_starting: str | None = None

    async def set_options(self, options: dict[str, Any], *, authorization: str | None, local_only: bool) -> None:
        """A1111's POST options here, then (unless `local_only`) the checkpoint it
        selected on every other replica."""
        if local_only and self.peers is not None and self.runtime.starting and set(options) == {"sd_model_checkpoint"}:
            self._forwarded_while_starting = self._offered(options["sd_model_checkpoint"])
            return
        selected = await self.state.set_options(options)
        if selected is None or local_only or self.peers is None:
            return
        await self._tell_others(selected, authorization)

    def _offered(self, wanted: object) -> str:
        """A checkpoint a peer named (by its name, as peers send it): before the registry
        is there, checked against the names this replica offers."""
        names = [ref.name for ref in self.runtime.checkpoints()]
        if wanted not in names:
            raise InvalidInput("sd_model_checkpoint", f"not one of this replica's checkpoints {names}", wanted)
        return str(wanted)

    async def _tell_others(self, name: str, authorization: str | None) -> None:
        peers = self.peers
        assert peers is not None
        answers = await peers.fetch_from_others(
            "POST", self.path, authorization=authorization, json_body={"sd_model_checkpoint": name},
            max_bytes=_SWITCH_ANSWER_BYTES, content_type="application/json", what="checkpoint switch",
            timeout_seconds=self.switch_timeout_seconds,
        )
        for peer, answer in answers:
            if answer is None:
                log.warning("peers: %s did not confirm the switch to %s (still loading or warming it, or failed); "
                            "until it switches, requests there that name no checkpoint get its own", peer, name)

    async def adopt_from_peers(self) -> None:
        """Before ready (Runtime.before_ready): the checkpoint the other replicas use."""
        if self.peers is None:
            return
        reported = await self._ask_others()
        offered = [ref.name for ref in self.runtime.checkpoints()]
        wanted = self._forwarded_while_starting or majority_checkpoint(reported, self.runtime.current_model, offered)
        log.info("peers: the other replicas use %s; starting on %s", sorted(reported) or "nothing known", wanted)
        # A switch forwarded while one is being loaded is loaded next (at most a few rounds).
        for _ in range(3):
            if wanted != self.runtime.current_model:
                try:
                    await self.runtime.adopt_model(wanted)
                except Exception as error:
                    log.warning("peers: could not load %s (%s: %s); starting on %s", wanted, type(error).__name__,
                                error, self.runtime.current_model)
                    break
            newer = self._forwarded_while_starting
            if newer is None or newer == wanted:
                break
            wanted = newer
        self._forwarded_while_starting = None

    async def _ask_others(self) -> list[str]:
        """The current checkpoint of every other replica that answers within the peers' timeout."""
        peers = self.peers
        assert peers is not None
        answers = await peers.fetch_from_others(
            "GET", self.path, authorization=None, with_token=True, max_bytes=_OPTIONS_ANSWER_BYTES,
            content_type="application/json", what="current checkpoint",
        )
        names = []
        for peer, body in answers:
            if body is None:
                continue
            name = await asyncio.to_thread(_checkpoint_of, body)
            if name is None:
                log.warning("peers: options from %s not used: no sd_model_checkpoint", peer)
            else:
                names.append(name)
        return names


def _checkpoint_of(body: bytes) -> str | None:
    try:
        options = json.loads(body)
    except ValueError:
        return None
    name = options.get("sd_model_checkpoint") if isinstance(options, dict) else None
    return name if isinstance(name, str) else None
