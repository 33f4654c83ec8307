"""Domain errors: what went wrong with a generation, in terms of the service, not HTTP.

Every layer may raise these (this module imports nothing from the package); only
`api/errors.py` turns them into a status code and each dialect's error body. `kind` is
the name A1111-shaped bodies and the `sd_failed_batches` metric report.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    kind = "ServiceError"


class InvalidInput(ServiceError):
    """A request field is wrong. `field` is its path in the request body: a name, or a
    tuple for a nested place (`("init_images", 0)`); the message names the field."""

    kind = "ValidationError"

    def __init__(self, field: str | tuple[str | int, ...], message: str, value: Any = None):
        self.field: tuple[str | int, ...] = field if isinstance(field, tuple) else (field,)
        self.value = value
        super().__init__(f"{self.field_name}: {message}")

    @property
    def field_name(self) -> str:
        return ".".join(str(part) for part in self.field)


class ModelNotFound(ServiceError, LookupError):
    """No checkpoint goes by that name; the message lists the ones there are."""

    kind = "ModelNotFound"

    def __init__(self, wanted: str, available: list[str]):
        super().__init__(f"unknown checkpoint {wanted!r}; available: {', '.join(available)}")
        self.wanted = wanted


class InitImageNotFound(ServiceError):
    """img2img without an init image (A1111 answers 404 "Init image not found")."""

    kind = "InitImageNotFound"

    def __init__(self) -> None:
        super().__init__("Init image not found")


class NotReady(ServiceError):
    """The server cannot take this request yet: the model is loading or failed to load."""

    kind = "NotReady"


class QueueFull(ServiceError):
    kind = "QueueFull"

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after}s")
        self.retry_after = retry_after


class ShuttingDown(ServiceError):
    kind = "ShuttingDown"


class ClientDisconnected(ServiceError):
    """The client went away before its images were made; its work was cancelled."""

    kind = "ClientDisconnected"


class GenerationFailed(ServiceError):
    """A pipeline call failed; only the requests in that batch see it."""

    kind = "GenerationError"


class OutOfMemory(GenerationFailed):
    """Even one image does not fit in the accelerator's memory."""

    kind = "OutOfMemory"


class Stalled(GenerationFailed):
    """A pipeline call made no step progress for --stall-seconds: its requests, and the
    ones queued behind it, are answered with this instead of waiting for ever."""

    kind = "Stalled"


class WorkerStopped(GenerationFailed):
    """The queue's worker is not running, so an admitted request would never be served."""

    kind = "WorkerStopped"
