"""HTTP Basic auth from an htpasswd file with bcrypt lines.

Enforced as ASGI middleware so that no route, static file or future router can be
forgotten; only the operational endpoints stay open (probes and Prometheus scrapes
carry no credentials).

bcrypt is slow on purpose, so it never runs on the event loop: checks run on a small
thread pool, at most `max_pending_checks` of them admitted at once (past that, a 429
without hashing anything), so a flood of wrong passwords cannot starve `/healthz` or the
generations. Verified credentials are remembered by their SHA-256, so bcrypt is paid once
per client, not per request; failures are never cached. Unknown users cost as much as
known ones (the dummy hash has the cost of the slowest configured hash), so response
time does not reveal which user names exist.

SDKs that only send bearer tokens (the `openai` client sends `Authorization: Bearer
<api_key>`) authenticate with `api_key="USER:PASSWORD"`: the same credentials, in the
header those clients know how to send.

Replicas share one more secret, the peer token (`--peer-token-file`): a starting replica
reads the other replicas' current checkpoint with it, having no client's credentials
(service/replica_checkpoint.py). It opens exactly one door: `GET /sdapi/v1/options` with
`x-sd-local-only` (that replica's options, nothing fetched further). It is compared in
constant time; any other request with it needs Basic credentials as before.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

from ..service.peers import LOCAL_ONLY_HEADER, PEER_TOKEN_HEADER
from .errors import a1111_error

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REALM = "stable-diffusion"
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_COST = re.compile(rb"^\$2[aby]\$(\d\d)\$")
# bcrypt reads at most 72 bytes of a password (bcrypt 5 refuses longer ones; so do the
# tools that write htpasswd files): a longer password can never match.
BCRYPT_MAX_PASSWORD_BYTES = 72
# Far above any real `Basic base64(user:password)` or bearer token; longer headers are
# refused without decoding them.
MAX_AUTHORIZATION_BYTES = 4096
# Threads that run bcrypt, and checks admitted at once (running + waiting for a thread).
BCRYPT_THREADS = 2
MAX_PENDING_CHECKS = 8
# What the peer token opens (method, path), with the local-only header.
PEER_TOKEN_ROUTES = frozenset({("GET", "/sdapi/v1/options")})
# A generated token is 32 characters (components/secrets.py); shorter ones are refused at start.
MIN_PEER_TOKEN_LENGTH = 16


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
        if not hashed.startswith(_BCRYPT_PREFIXES) or not _BCRYPT_COST.match(hashed.encode("ascii", "replace")):
            raise HtpasswdError(f"{path}: line {number} is not a bcrypt hash (htpasswd -B)")
        # bcrypt implementations agree on $2b$; $2y$ (Apache) and $2a$ hash identically.
        users[user] = ("$2b$" + hashed[4:]).encode("ascii")
    if not users:
        raise HtpasswdError(f"{path}: no users")
    return users


def load_peer_token(path: Path) -> str:
    """The replicas' shared token (surrounding whitespace dropped). Errors never show it."""
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < MIN_PEER_TOKEN_LENGTH or any(c.isspace() or not c.isprintable() for c in token):
        raise HtpasswdError(f"{path}: the peer token must be one line of at least {MIN_PEER_TOKEN_LENGTH} "
                            "printable characters without spaces")
    return token


def bcrypt_cost(hashed: bytes) -> int:
    match = _BCRYPT_COST.match(hashed)
    if match is None:
        raise ValueError("not a bcrypt hash")
    return int(match[1])


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"  # too many credential checks in progress: try again shortly


class BasicAuth:
    def __init__(
        self,
        users: dict[str, bytes],
        cache_size: int = 256,
        threads: int = BCRYPT_THREADS,
        max_pending_checks: int = MAX_PENDING_CHECKS,
    ):
        self._users = users
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        # Unknown users are checked against this, at the cost of the slowest real hash.
        self._dummy_hash = bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=max(map(bcrypt_cost, users.values()))))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        self._max_pending = max_pending_checks
        self._pending = 0  # only touched on the event loop

    async def check(self, authorization: str | None) -> Verdict:
        if authorization is None or len(authorization) > MAX_AUTHORIZATION_BYTES:
            return Verdict.DENIED
        decoded = _credentials(authorization)
        if decoded is None:
            return Verdict.DENIED
        user, sep, password = decoded.partition(":")
        if not sep:
            return Verdict.DENIED
        fingerprint = hashlib.sha256(decoded.encode("utf-8")).digest()
        if fingerprint in self._verified:
            self._verified.move_to_end(fingerprint)
            return Verdict.ALLOWED
        secret = password.encode("utf-8")
        if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
            return Verdict.DENIED  # same answer for every user, and no hashing
        if self._pending >= self._max_pending:
            return Verdict.BUSY
        # Unknown user: the same work as a wrong password, so timing reveals no user names.
        hashed = self._users.get(user)
        self._pending += 1
        try:
            matched = await asyncio.get_running_loop().run_in_executor(
                self._pool, bcrypt.checkpw, secret, hashed if hashed is not None else self._dummy_hash
            )
        finally:
            self._pending -= 1
        if not matched or hashed is None:
            return Verdict.DENIED
        self._verified[fingerprint] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return Verdict.ALLOWED

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _credentials(authorization: str) -> str | None:
    """`user:password` from a Basic header, or from a Bearer token of that form."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, auth: BasicAuth, peer_token: str | None = None):
        self.app = app
        self.auth = auth
        self._peer_token = peer_token.encode("utf-8") if peer_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self._peer_allowed(scope):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        verdict = await self.auth.check(header)
        if verdict is Verdict.ALLOWED:
            await self.app(scope, receive, send)
            return
        if verdict is Verdict.BUSY:
            response = a1111_error(
                429, "TooManyRequests", "too many credential checks in progress; retry shortly",
                headers={"Retry-After": "1"},
            )
        else:
            response = a1111_error(
                401,
                "Unauthorized",
                "valid HTTP Basic credentials are required",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        await response(scope, receive, send)

    def _peer_allowed(self, scope: Scope) -> bool:
        """A replica's read of this one's options, with the shared token."""
        if self._peer_token is None or (scope["method"], scope["path"]) not in PEER_TOKEN_ROUTES:
            return False
        headers = dict(scope["headers"])  # the last of a repeated header: only one is sent
        sent = headers.get(PEER_TOKEN_HEADER.encode("ascii"))
        if sent is None or LOCAL_ONLY_HEADER.encode("ascii") not in headers:
            return False
        # Digests of equal length: the comparison's time says nothing about the token.
        return hmac.compare_digest(hashlib.sha256(sent).digest(), hashlib.sha256(self._peer_token).digest())
