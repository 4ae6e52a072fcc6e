"""The ASGI application: routes, start-up (model warm-up, VAD batcher) and shutdown.

Routes (SPEC §14): the Realtime WebSocket on ``/openai/v1/realtime``, ``/v1/realtime`` and
``/openai/realtime`` (the ``AzureOpenAI`` client's path), and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from ..pipeline.base import VAD
from ..pipeline.responder import Pipeline
from ..pipeline.scheduler import SCHEDULER
from .admission import Admission, auto_conversations
from .auth import Authenticator
from .calls import ROUTES as CALL_ROUTES
from .calls import CallRegistry
from .client_secrets import PATHS as CLIENT_SECRET_PATHS
from .client_secrets import create_client_secret
from .ephemeral import EphemeralKeyStore
from .metrics import Metrics, metrics_endpoint
from .preauth import install_accept_error_filter
from .preview_rest import ROUTES as PREVIEW_REST_ROUTES
from .profiles import gateway_config, pipelines_from_config
from .realtime_ws import ServerState, realtime_endpoint
from .routing import ModelRouter
from .settings import Settings

log = logging.getLogger("rtgate.server")

PipelineFactory = Callable[[Settings], dict[str, Pipeline]]


def builtin_pipeline() -> Pipeline:
    from ..pipeline.builtin import EchoLLM, ToneTTS

    return Pipeline("builtin", EchoLLM(), ToneTTS())


def default_pipeline() -> Pipeline:
    from ..pipeline.engines.registry import build_default_stack

    stack = build_default_stack()
    return Pipeline("default", stack.llm, stack.tts, stack.stt)


def build_profiles(settings: Settings) -> dict[str, Pipeline]:
    """Every profile: the default (``settings.pipeline``) and the config file's ``[profiles.X]``.

    ``[profiles.default]`` in the config file replaces the embedded default; stages a
    profile leaves out use the embedded engines, shared between profiles (see
    :mod:`rtgate.server.profiles`). Raises :class:`~rtgate.server.config.ConfigError`.
    """
    if settings.pipeline not in ("default", "builtin"):
        raise ValueError(f"unknown pipeline {settings.pipeline!r}: expected 'default' or 'builtin'")
    builtin = settings.pipeline == "builtin"
    return pipelines_from_config(
        gateway_config(settings),
        default=(lambda cache: builtin_pipeline()) if builtin else None,
        source=settings.config_file or "config",
    )


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that left while its request body was being read (or that missed the body
    deadline, server/preauth.py): nothing to answer, nothing to log (issue 17)."""
    log.debug("client left during %s %s", request.method, request.url.path)
    return Response(status_code=400)


def default_vad() -> VAD:
    from ..pipeline.vad_silero import SileroVAD

    return SileroVAD()


def create_app(
    settings: Settings,
    *,
    profiles: PipelineFactory = build_profiles,
    vad_factory: Callable[[], VAD | None] = default_vad,
    on_ready: Callable[[], object] | None = None,
) -> Starlette:
    """Build the app; models load and warm up in the lifespan, before the first session.

    ``on_ready`` runs once start-up is complete, before the first request is served
    (``rtgate serve`` freezes the start-up heap there: server/heap.py).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from ..transport.vad import VadService

        install_accept_error_filter(asyncio.get_running_loop())  # issue 17: no EMFILE flood
        pipelines = profiles(settings)
        vad_model = vad_factory()
        vad = VadService(vad_model) if vad_model is not None else None
        for pipeline in pipelines.values():
            await pipeline.warm_up()
        if vad is not None:
            await vad.start()
        ephemeral = EphemeralKeyStore.for_deployment(settings.api_keys)
        metrics = Metrics(SCHEDULER)
        admission = Admission(
            SCHEDULER,
            max_conversations=settings.max_conversations or auto_conversations(),
            overload_late_s=settings.overload_late_s or math.inf,
            refused=metrics.sessions_refused,
        )
        log.info(
            "admission: %d conversations at once (max_conversations), refused while the "
            "models run over %.1f s late (overload_late_s)",
            admission.max_conversations, admission.overload_late_s,
        )
        app.state.rtgate = ServerState(
            settings=settings,
            auth=Authenticator(settings.api_keys, ephemeral=ephemeral),
            router=ModelRouter.from_config(pipelines, gateway_config(settings)),
            vad=vad,
            ephemeral=ephemeral,
            calls=CallRegistry(settings),
            metrics=metrics,
            admission=admission,
        )
        if on_ready is not None:
            on_ready()
        log.info("rtgate ready: profiles %s", ", ".join(pipelines))
        try:
            yield
        finally:
            await app.state.rtgate.calls.aclose()
            if vad is not None:
                await vad.stop()
            for pipeline in pipelines.values():
                await pipeline.aclose()

    async def healthz(request: Request) -> JSONResponse:
        state = request.app.state.rtgate
        return JSONResponse({"status": "ok", "sessions": state.active_sessions})

    routes = [
        WebSocketRoute("/openai/v1/realtime", realtime_endpoint),
        WebSocketRoute("/v1/realtime", realtime_endpoint),
        WebSocketRoute("/openai/realtime", realtime_endpoint),
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        *(Route(p, create_client_secret, methods=["POST"]) for p in CLIENT_SECRET_PATHS),
        *CALL_ROUTES,
        *PREVIEW_REST_ROUTES,
        *(Route(p, create_client_secret, methods=["POST"]) for p in CLIENT_SECRET_PATHS),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={ClientDisconnect: _client_gone})
