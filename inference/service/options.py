"""What A1111 keeps between requests in its global `shared.state` / `shared.opts`: the
options a client set, and whether the last job was interrupted or skipped.

One per app, shared by the `/sdapi/v1` routes and by `GenerationService` (a request's
`override_settings` with `override_settings_restore_afterwards: false` stay set).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, ModelNotFound
from ..serving.batcher import Batcher, Progress
from .peers import SWITCH_STAMP_OPTION, SwitchStamp
from .runtime import Runtime

log = logging.getLogger(__name__)

# Reported as they are whatever a client stores under these names (the last one only to
# replicas: service/replica_checkpoint.py; never stored, so a client cannot plant one).
_DERIVED_OPTIONS = ("sd_model_checkpoint", "sd_checkpoint_hash", SWITCH_STAMP_OPTION)

# Stored options are kept for the life of the process and echoed by every GET, so one
# client must not grow them without bound. A1111 itself has about 450 options: a client
# that reads them all and posts them back fits with room to spare.
MAX_STORED_OPTIONS = 1024
MAX_OPTION_NAME_LENGTH = 200
MAX_OPTION_VALUE_BYTES = 64 * 1024  # one value, as JSON
MAX_STORED_OPTIONS_BYTES = 1024 * 1024  # names + values, as JSON


def _stored_size(name: str, value: Any) -> int | None:
    """Bytes an option takes (name + JSON value); None when its value cannot be stored."""
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return len(name) + len(encoded)


def checkpoint_sha256(name: str) -> str:
    """Stands in for A1111's file hash; its first 10 digits are `LoadedModel.short_hash`."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def current_options(checkpoint: str, stored: dict[str, Any], loaded_limit: int) -> dict[str, Any]:
    options = {
        "samples_format": "png",
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0,
        "live_previews_enable": False,
        "enable_pnginfo": True,
        "save_images_add_number": True,
        "sd_checkpoints_limit": loaded_limit,
    }
    options.update(stored)
    # Always the truth, whatever was posted.
    options["sd_model_checkpoint"] = checkpoint
    options["sd_checkpoint_hash"] = checkpoint_sha256(checkpoint)
    return options


@dataclass(frozen=True)
class ProgressReport:
    """`/sdapi/v1/progress`: the running call (None when idle) and the last job's flags."""

    interrupted: bool
    skipped: bool
    queued: int
    running: Progress | None


class A1111State:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        # Options set by POST /options that we do not act on; GET /options echoes them back.
        self.stored_options: dict[str, Any] = {}
        self._stored_sizes: dict[str, int] = {}  # name -> _stored_size, for the bounds
        # `started_at` of the batch that was interrupted or skipped (A1111 reports the
        # flag until the next job begins).
        self.interrupted_batch: float | None = None
        self.skipped_batch: float | None = None

    # -- options -------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        self.runtime.require_started()
        return current_options(self.runtime.current_model, self.stored_options, self.runtime.settings.max_loaded_models)

    async def set_options(self, options: dict[str, Any], stamp: SwitchStamp | None = None) -> str | None:
        """`sd_model_checkpoint` selects the current checkpoint, answering once it is
        loaded and warmed up (Runtime.select_model; a failure is a 500 naming it, and
        nothing changes); the other options are stored, to be echoed back. Options past
        the bounds are refused (422 naming the first one) before anything changes.
        Returns the selected checkpoint's name (None when none was asked for, or when
        `stamp` is older than the current checkpoint's: service/replica_checkpoint.py)."""
        problem = next(self._refusals(options), None)
        if problem is not None:
            name, reason = problem
            shown = name if len(name) <= MAX_OPTION_NAME_LENGTH else name[:MAX_OPTION_NAME_LENGTH] + "..."
            raise InvalidInput(shown, reason)
        wanted = options.get("sd_model_checkpoint")
        selected = None
        if wanted is not None:
            try:
                model = await self.runtime.select_model(str(wanted), stamp)
                selected = model.name if model is not None else None
            except ModelNotFound as error:
                raise InvalidInput("sd_model_checkpoint", str(error), wanted) from None
        self.store(options)
        return selected

    def store(self, options: dict[str, Any]) -> None:
        """Keeps the options within the bounds; the ones past them are dropped (a
        request's `override_settings` that stay set after it ran: its images are made)."""
        refused = {name for name, _ in self._refusals(options)}
        for name, value in options.items():
            if name in _DERIVED_OPTIONS or name in refused:
                continue
            self._stored_sizes[name] = _stored_size(name, value)  # type: ignore[assignment]
            self.stored_options[name] = value
        if refused:
            log.warning("%d option(s) not stored: past the stored options' bounds", len(refused))

    def _refusals(self, options: dict[str, Any]):
        """(option, reason) for each option that would take the stored options past
        their bounds, taking the options in order."""
        count = len(self.stored_options)
        total = sum(self._stored_sizes.values())
        for name, value in options.items():
            if name in _DERIVED_OPTIONS:
                continue
            if len(name) > MAX_OPTION_NAME_LENGTH:
                yield (name, f"option names are at most {MAX_OPTION_NAME_LENGTH} characters")
                continue
            size = _stored_size(name, value)
            if size is None or size - len(name) > MAX_OPTION_VALUE_BYTES:
                yield (name, f"an option's value is at most {MAX_OPTION_VALUE_BYTES} bytes of JSON")
                continue
            known = name in self._stored_sizes
            if not known and count >= MAX_STORED_OPTIONS:
                yield (name, f"at most {MAX_STORED_OPTIONS} options are stored; this one would be one more")
                continue
            grown = total - self._stored_sizes.get(name, 0) + size
            if grown > MAX_STORED_OPTIONS_BYTES:
                yield (name, f"stored options take at most {MAX_STORED_OPTIONS_BYTES} bytes; this one would pass that")
                continue
            count += 0 if known else 1
            total = grown

    # -- jobs, interrupt and skip ---------------------------------------------------

    def begin_job(self) -> None:
        """A1111's state.begin(): a new job clears the interrupted/skipped flags of the last one."""
        batcher = self.runtime.batcher
        if batcher is None or batcher.depth == 0:
            self.interrupted_batch = self.skipped_batch = None

    def interrupt(self) -> None:
        """Stops the running batch's requests (A1111 does nothing when nothing runs)."""
        batcher = self._mark_running("interrupted_batch")
        if batcher is not None:
            batcher.interrupt()

    def skip(self) -> None:
        """Stops the running pipeline call; its requests go on with their next batch."""
        batcher = self._mark_running("skipped_batch")
        if batcher is not None:
            batcher.skip()

    def _mark_running(self, flag: str) -> Batcher | None:
        """Records which batch was stopped; the batcher running it, None when nothing runs."""
        batcher = self.runtime.batcher
        if batcher is None or not batcher.progress.active:
            return None
        setattr(self, flag, batcher.progress.started_at)
        return batcher

    def progress(self) -> ProgressReport:
        batcher = self.runtime.batcher
        current = batcher.progress if batcher is not None else None
        if current is None or not current.active:
            current = None
        else:
            # A new batch clears the flags of the one before, as A1111's state.begin() does.
            if self.interrupted_batch not in (None, current.started_at):
                self.interrupted_batch = None
            if self.skipped_batch not in (None, current.started_at):
                self.skipped_batch = None
        return ProgressReport(
            interrupted=self.interrupted_batch is not None,
            skipped=self.skipped_batch is not None,
            queued=batcher.depth if batcher is not None else 0,
            running=current,
        )
