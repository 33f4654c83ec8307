"""The current checkpoint (A1111's `sd_model_checkpoint`), kept the same on every replica.

Clients such as StableStudio's webui plugin, A1111 scripts and `webuiapi` read `GET
/sdapi/v1/options`, switch with `POST /sdapi/v1/options {"sd_model_checkpoint": ...}`, then
generate without naming a model; behind a Service each of those calls may reach another
replica. So, with peers (service/peers.py):

- a switch is applied here first (its validation errors as before, nothing forwarded
  then), then sent to every other replica at once as `{"sd_model_checkpoint": <its
  name>}` with `LOCAL_ONLY_HEADER` (so it goes no further), the client's
  `Authorization`, its stamp and the replicas' shared token (below); the answer waits
  until they all answered or `--peer-switch-timeout-seconds` passed, as A1111 answers
  once the checkpoint is loaded.
  Each replica answers once it has loaded and warmed the checkpoint (Runtime.select_model),
  which on a GPU with an empty compile cache can outlast the timeout. A peer that fails or
  is slow is logged and the client still gets A1111's answer; a slow peer is not stopped
  by the forwarder giving up on it: it switches once warm (meanwhile its requests that name
  no checkpoint get the one it had). Only
  the checkpoint is sent: the other options are stored to be echoed, per replica, and a
  peer's bounds on them could refuse what this replica stored.
- a replica that starts (scale-up, restart) asks the others, after its default checkpoint
  is loaded and warmed and before it is ready, for their current checkpoint and its stamp
  (below; `GET` with `LOCAL_ONLY_HEADER` and the replicas' shared token: no client
  credentials exist then) and adopts the one with the newest stamp among those it offers,
  taking its stamp; when no peer reports a stamp (none has switched since it started, or
  peers of an older version), the one most of them report; a tie, no answer or names it
  does not offer keep the default. A switch a peer forwards while it starts is kept and
  wins over what the peers reported when its stamp is newer. The asking takes at most the
  peers' timeout; the adopted checkpoint is then loaded and warmed (Runtime.adopt_model)
  before ready.

Switches that cross (client 1 switches to X through replica A while client 2 switches to
Y through B) would otherwise leave A on Y and B on X for good: each replica applies
switches in the order they reach it. So the last writer wins, by a stamp taken where the
switch entered the system: the replica a client asked stamps the switch (`SwitchStamp`:
its wall clock in nanoseconds, `time.time_ns()`, and a random tie-breaker) and forwards
the stamp with it (`SWITCH_STAMP_HEADER`). Every replica remembers the stamp of its
current checkpoint (Runtime.switch_stamp); a switch stamped no newer than that, once the
switches that reached it before are done, is answered (`null`, as A1111) but not applied
(logged at info: superseded by a newer switch). Every replica compares the same stamps,
so every one ends on the same checkpoint. A stamp is also never older than one this
replica has seen (it takes the newest seen plus a nanosecond if the clock is behind), so
a switch made after another one was answered wins however the clocks differ (unless the
replica it enters through missed the first one: a forward that failed or timed out).

Clock skew between pods is normally milliseconds (NTP): of two switches entering at
nearly the same moment through different replicas, the older one can win by up to the
skew, but every replica still ends on the same one, since they all compare the same
stamps.

A stamp is believed only from a replica: with a peer token (`--peer-token-file`, as the
component sets with auth on), only on a local-only request that carries it (besides the
client's credentials, checked as before); a stamp from a client (no token, or a wrong
one) is ignored and the switch is stamped here, as if it entered here. Otherwise a client
could send a stamp far in the future and pin the checkpoint: every later switch would be
older. Without a peer token (auth off: every client may switch every replica anyway) a
stamp is believed unless it is more than `MAX_STAMP_AHEAD_SECONDS` ahead of this
replica's clock, so a planted one holds no longer than that (and a pod whose clock runs
further ahead has its switches stamped again where they arrive, which can leave replicas
on different checkpoints, as before stamps).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import InvalidInput
from .options import MAX_STORED_OPTIONS_BYTES, A1111State
from .peers import SWITCH_STAMP_HEADER, SWITCH_STAMP_OPTION, Peers, SwitchStamp

log = logging.getLogger(__name__)

# A peer's answer to the switch is `null`; to GET options its options, stored ones included.
_SWITCH_ANSWER_BYTES = 1024
_OPTIONS_ANSWER_BYTES = 2 * MAX_STORED_OPTIONS_BYTES + 64 * 1024
# Without a peer token, how far ahead of this replica's clock a forwarded stamp may be:
# far above NTP skew, and as long as a stamp a client plants can hold the checkpoint.
MAX_STAMP_AHEAD_SECONDS = 10


def majority_checkpoint(reported: Iterable[str], default: str, offered: Iterable[str]) -> str:
    """The checkpoint most peers report, among those `offered` here; `default` when none
    is reported or the most reported ones tie."""
    known = set(offered)
    counts = Counter(name for name in reported if name in known).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return default
    return counts[0][0]


def newest_checkpoint(
    reported: Iterable[tuple[str, SwitchStamp | None]], default: str, offered: Iterable[str]
) -> tuple[str, SwitchStamp | None]:
    """The checkpoint of the newest stamp the peers report, among those `offered` here,
    with that stamp; when none reports a stamp, `majority_checkpoint` (without one)."""
    known = set(offered)
    usable = [(name, stamp) for name, stamp in reported if name in known]
    stamped = [(stamp, name) for name, stamp in usable if stamp is not None]
    if stamped:
        stamp, name = max(stamped)
        return name, stamp
    return majority_checkpoint((name for name, _ in usable), default, known), None


class ReplicaCheckpoint:
    """`POST /sdapi/v1/options` for every replica, and adopting the others' checkpoint at start."""

    def __init__(
        self,
        state: A1111State,
        peers: Peers | None,
        *,
        path: str,
        switch_timeout_seconds: float,
        clock: Callable[[], int] = time.time_ns,
    ):
        self.state = state
        self.runtime = state.runtime
        self.peers = peers
        self.path = path  # where a peer serves GET and POST options
        self.switch_timeout_seconds = switch_timeout_seconds
        self._clock = clock  # the wall clock, in nanoseconds
        # The newest stamp seen here (made, forwarded, reported): a new one is newer.
        self._newest_seen: SwitchStamp | None = None
        # A switch a peer forwarded before this replica was ready, with its stamp: adopted at start.
        self._forwarded_while_starting: tuple[str, SwitchStamp] | None = None

    def options(self, *, local_only: bool) -> dict[str, Any]:
        """A1111's GET options; to a local-only read with peers (a starting replica's),
        with the current checkpoint's stamp too, when it has one."""
        options = self.state.options()
        options.pop(SWITCH_STAMP_OPTION, None)
        stamp = self.runtime.switch_stamp
        if local_only and self.peers is not None and stamp is not None:
            options[SWITCH_STAMP_OPTION] = str(stamp)
        return options

    async def set_options(
        self,
        options: dict[str, Any],
        *,
        authorization: str | None,
        local_only: bool,
        stamp: str | None = None,
        peer_token: str | None = None,
    ) -> None:
        """A1111's POST options here, then (unless `local_only`) the checkpoint it
        selected on every other replica. `stamp` and `peer_token` are the request's
        SWITCH_STAMP_HEADER and PEER_TOKEN_HEADER, as sent (a forwarded switch's)."""
        if self.peers is None:
            await self.state.set_options(options)
            return
        switch_stamp = self._stamp_of(stamp, peer_token, local_only) if "sd_model_checkpoint" in options else None
        if local_only and self.runtime.starting and set(options) == {"sd_model_checkpoint"}:
            assert switch_stamp is not None
            self._keep_while_starting(self._offered(options["sd_model_checkpoint"]), switch_stamp)
            return
        selected = await self.state.set_options(options, switch_stamp)
        if selected is None or local_only:
            return
        assert switch_stamp is not None
        await self._tell_others(selected, authorization, switch_stamp)

    def _stamp_of(self, sent: str | None, peer_token: str | None, local_only: bool) -> SwitchStamp:
        """The stamp a forwarded switch carries, if it is believed (module docstring);
        otherwise a new one: the switch entered the system here."""
        peers = self.peers
        assert peers is not None
        stamp = SwitchStamp.parse(sent) if local_only and sent is not None else None
        if sent is not None and stamp is None:
            log.warning("peers: a switch's stamp ignored (not a stamp, or not local-only); stamped here")
        elif stamp is not None and peers.token is not None and not peers.token_matches(peer_token):
            log.warning("peers: a switch's stamp ignored: sent without the replicas' token (a client's); stamped here")
            stamp = None
        elif stamp is not None and peers.token is None and (
            stamp.nanoseconds > self._clock() + MAX_STAMP_AHEAD_SECONDS * 1_000_000_000
        ):
            log.warning("peers: a switch's stamp ignored: more than %ds ahead of this replica's clock; stamped here",
                        MAX_STAMP_AHEAD_SECONDS)
            stamp = None
        if stamp is None:
            newest = self._newest_seen
            now = max(self._clock(), newest.nanoseconds + 1 if newest is not None else 0)
            stamp = SwitchStamp(now, secrets.token_hex(8))
        self._seen(stamp)
        return stamp

    def _seen(self, stamp: SwitchStamp | None) -> None:
        if stamp is not None and (self._newest_seen is None or stamp > self._newest_seen):
            self._newest_seen = stamp

    def _keep_while_starting(self, name: str, stamp: SwitchStamp) -> None:
        kept = self._forwarded_while_starting
        if kept is None or stamp > kept[1]:
            self._forwarded_while_starting = (name, stamp)

    def _offered(self, wanted: object) -> str:
        """A checkpoint a peer named (by its name, as peers send it): before the registry
        is there, checked against the names this replica offers."""
        names = [ref.name for ref in self.runtime.checkpoints()]
        if wanted not in names:
            raise InvalidInput("sd_model_checkpoint", f"not one of this replica's checkpoints {names}", wanted)
        return str(wanted)

    async def _tell_others(self, name: str, authorization: str | None, stamp: SwitchStamp) -> None:
        peers = self.peers
        assert peers is not None
        # The token vouches for the stamp (it opens nothing here: the client's credentials do).
        answers = await peers.fetch_from_others(
            "POST", self.path, authorization=authorization, json_body={"sd_model_checkpoint": name},
            max_bytes=_SWITCH_ANSWER_BYTES, content_type="application/json", what="checkpoint switch",
            timeout_seconds=self.switch_timeout_seconds, with_token=True,
            headers={SWITCH_STAMP_HEADER: str(stamp)},
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
        for _, reported_stamp in reported:
            self._seen(reported_stamp)
        offered = [ref.name for ref in self.runtime.checkpoints()]
        wanted, stamp = newest_checkpoint(reported, self.runtime.current_model, offered)
        forwarded = self._forwarded_while_starting
        if forwarded is not None and (stamp is None or forwarded[1] > stamp):
            wanted, stamp = forwarded
        log.info("peers: the other replicas use %s; starting on %s",
                 sorted(name for name, _ in reported) or "nothing known", wanted)
        # A switch forwarded while one is being loaded is loaded next (at most a few rounds).
        for _ in range(3):
            try:
                await self.runtime.adopt_model(wanted, stamp)
            except Exception as error:
                log.warning("peers: could not load %s (%s: %s); starting on %s", wanted, type(error).__name__,
                            error, self.runtime.current_model)
                break
            newer = self._forwarded_while_starting
            if newer is None or (stamp is not None and newer[1] <= stamp):
                break
            wanted, stamp = newer
        self._forwarded_while_starting = None

    async def _ask_others(self) -> list[tuple[str, SwitchStamp | None]]:
        """The current checkpoint of every other replica that answers within the peers'
        timeout, with the stamp of the switch that made it current (None: none)."""
        peers = self.peers
        assert peers is not None
        answers = await peers.fetch_from_others(
            "GET", self.path, authorization=None, with_token=True, max_bytes=_OPTIONS_ANSWER_BYTES,
            content_type="application/json", what="current checkpoint",
        )
        found = []
        for peer, body in answers:
            if body is None:
                continue
            current = await asyncio.to_thread(_checkpoint_of, body)
            if current is None:
                log.warning("peers: options from %s not used: no sd_model_checkpoint", peer)
            else:
                found.append(current)
        return found


def _checkpoint_of(body: bytes) -> tuple[str, SwitchStamp | None] | None:
    try:
        options = json.loads(body)
    except ValueError:
        return None
    if not isinstance(options, dict):
        return None
    name = options.get("sd_model_checkpoint")
    return (name, SwitchStamp.parse(options.get(SWITCH_STAMP_OPTION))) if isinstance(name, str) else None
