"""HTTP Basic auth from an htpasswd file with bcrypt lines.

Enforced as ASGI middleware so that no route, static file or future router can be
forgotten; only the operational endpoints stay open (probes and Prometheus scrapes
carry no credentials). Verified credentials are remembered by their SHA-256 so bcrypt's
deliberate slowness is paid once per client, not per request; failures are never cached.

SDKs that only send bearer tokens (the `openai` client sends `Authorization: Bearer
<api_key>`) authenticate with `api_key="USER:PASSWORD"`: the same credentials, in the
header those clients know how to send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict
from pathlib import Path

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import a1111_error

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REALM = "stable-diffusion"
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class HtpasswdError(ValueError):
    pass


def load_htpasswd(path: Path) -> dict[str, bytes]:
    """user -> bcrypt hash. Errors name the line, never its content (it is a secret)."""
    users: dict[str, bytes] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"{path}: line {number} is not 'user:hash'")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise HtpasswdError(f"{path}: line {number} is not a bcrypt hash (htpasswd -B)")
        # bcrypt implementations agree on $2b$; $2y$ (Apache) and $2a$ hash identically.
        users[user] = ("$2b$" + hashed[4:]).encode("ascii")
    if not users:
        raise HtpasswdError(f"{path}: no users")
    return users


class BasicAuth:
    def __init__(self, users: dict[str, bytes], cache_size: int = 256):
        self._users = users
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size

    def check(self, authorization: str | None) -> bool:
        decoded = _credentials(authorization)
        if decoded is None:
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        fingerprint = hashlib.sha256(decoded.encode("utf-8")).digest()
        if fingerprint in self._verified:
            self._verified.move_to_end(fingerprint)
            return True
        hashed = self._users.get(user)
        if hashed is None:
            # Same cost as a wrong password, so response time does not reveal user names.
            bcrypt.checkpw(b"x", _DUMMY_HASH)
            return False
        if not bcrypt.checkpw(password.encode("utf-8"), hashed):
            return False
        self._verified[fingerprint] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return True


def _credentials(authorization: str | None) -> str | None:
    """`user:password` from a Basic header, or from a Bearer token of that form."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


_DUMMY_HASH = bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=10))


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, auth: BasicAuth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        if self.auth.check(header):
            await self.app(scope, receive, send)
            return
        response = a1111_error(
            401,
            "Unauthorized",
            "valid HTTP Basic credentials are required",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )
        await response(scope, receive, send)
