"""Building the FastAPI application."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ..config import ServerSettings
from ..engine.oom import BatchRunner
from ..service.describe import VERSION
from ..service.generation import GenerationService
from ..service.history import GenerationHistory, ImageUrlStore
from ..service.options import A1111State
from ..service.peers import ImageLinks, PeerResolver, Peers, ReplicaHistory, resolve_with_dns
from ..service.replica_checkpoint import ReplicaCheckpoint
from ..service.replica_progress import ReplicaProgress
from ..service.runtime import Runtime
from . import extras, openai_images, ops, sdapi, sdapi_catalog, seed, stablestudio
from .auth import BasicAuth, BasicAuthMiddleware, load_htpasswd, load_peer_token
from .errors import install_error_handlers
from .middleware import BodySizeLimitMiddleware, MetricsMiddleware
from .security import SecurityHeadersMiddleware, mount_docs
from .web import mount_web

DESCRIPTION = """Stable Diffusion over HTTP, in three dialects:
the seed API (`/v1/txt2img`, `/v1/img2img`), AUTOMATIC1111's `/sdapi/v1`, and OpenAI images.
Images are base64 PNGs that carry A1111's `parameters` text chunk."""


def create_app(
    settings: ServerSettings,
    *,
    wrap_runner: Callable[[BatchRunner], BatchRunner] | None = None,
    peer_resolver: PeerResolver = resolve_with_dns,
) -> FastAPI:
    runtime = Runtime(settings, wrap_runner=wrap_runner)
    # Read the password file before serving anything: a bad file is a startup error.
    auth = BasicAuth(load_htpasswd(settings.auth_file)) if settings.auth_file else None
    peer_token = load_peer_token(settings.peer_token_file) if settings.peer_token_file else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            if auth is not None:
                auth.close()

    # /docs is served from this server's files (security.py), not FastAPI's CDN page.
    app = FastAPI(
        title="Stable Diffusion", version=VERSION.split()[-1], description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,
    )
    # The service objects of this app, read by the routes through api/dependencies.py.
    app.state.runtime = runtime
    peers = make_peers(settings, peer_resolver, peer_token)
    owner_tag = peers.owner_tag if peers else None
    history = GenerationHistory(settings.history_size, owner_tag=owner_tag)
    app.state.history = ReplicaHistory(history, peers, max_entry_bytes=_max_png_base64_bytes(settings))
    app.state.image_links = ImageLinks(
        ImageUrlStore(settings.image_url_capacity, settings.image_url_ttl_seconds, owner_tag=owner_tag), peers
    )
    app.state.a1111 = A1111State(runtime)
    app.state.generation = GenerationService(settings, runtime, app.state.a1111, history=history)
    app.state.checkpoint = ReplicaCheckpoint(
        app.state.a1111, peers, path=sdapi.OPTIONS_PATH, switch_timeout_seconds=settings.peer_switch_timeout_seconds
    )
    app.state.progress = ReplicaProgress(
        app.state.a1111, peers, progress_path=sdapi.PROGRESS_PATH, interrupt_path=sdapi.INTERRUPT_PATH,
        skip_path=sdapi.SKIP_PATH,
    )
    if peers is not None:  # a starting replica adopts the checkpoint the others use
        runtime.before_ready = app.state.checkpoint.adopt_from_peers
    install_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(seed.router)
    app.include_router(sdapi.router)
    app.include_router(extras.router)
    app.include_router(sdapi_catalog.router)
    app.include_router(stablestudio.router)
    app.include_router(openai_images.router)
    mount_web(app)
    mount_docs(app)

    # Middleware runs outermost-last: CORS answers preflights before auth, the metrics
    # layer sees every response, 401s and 413s included, and every response (CORS
    # preflights too) carries the security headers.
    if auth is not None:
        app.add_middleware(BasicAuthMiddleware, auth=auth, peer_token=peer_token)
    app.add_middleware(BodySizeLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, routes=app.routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            # With '*', Starlette would reflect any origin with credentials allowed: every
            # web page could drive the API with a user's cached Basic auth. Credentials
            # are allowed only for origins named one by one.
            allow_credentials="*" not in settings.cors_origins,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    return app


# A generated image is one PNG of at most max_width x max_height: RGBA at 4 bytes a pixel
# bounds it (PNG's own overhead is far below the margin, which also covers its text chunk).
_PNG_MARGIN_BYTES = 1024 * 1024


def _max_png_bytes(settings: ServerSettings) -> int:
    return settings.max_width * settings.max_height * 4 + _PNG_MARGIN_BYTES


def _max_png_base64_bytes(settings: ServerSettings) -> int:
    return -(-_max_png_bytes(settings) // 3) * 4


def make_peers(settings: ServerSettings, resolver: PeerResolver, token: str | None = None) -> Peers | None:
    """The other replicas (url images, StableStudio's history, the current checkpoint,
    progress, interrupt and skip), when configured."""
    if not (settings.peers and settings.advertise_address):
        return None
    return Peers(
        settings.advertise_address, settings.peers, settings.port, resolver=resolver, max_bytes=_max_png_bytes(settings),
        token=token,
    )
