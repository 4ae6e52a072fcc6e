"""The ASGI application: routes, start-up (model warm-up, VAD batcher) and shutdown.

Routes (docs/protocol.md, Endpoints): the Realtime WebSocket on ``/openai/v1/realtime``, ``/v1/realtime`` and
``/openai/realtime`` (the ``AzureOpenAI`` client's path), ``/healthz`` (alive) and
``/readyz`` (ready for new sessions: not draining; with ``ready_requires_redis``, Redis
reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import math
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .. import extras, tracing
from ..cluster import ClusterStore, new_member, open_store
from ..pipeline.base import VAD
from ..pipeline.responder import Pipeline
from ..pipeline.scheduler import SCHEDULER
from ..protocol.errors import RealtimeError
from .admin import usage_endpoint
from .admission import Admission, auto_conversations
from .auth import Authenticator
from .call_registry import CallRegistry
from .calls import PREFIXES as CALL_PREFIXES
from .calls import ROUTES as CALL_ROUTES
from .client_secrets import PATHS as CLIENT_SECRET_PATHS
from .client_secrets import RestError, authenticate, create_client_secret, error_response
from .drain import Drain
from .ephemeral import EphemeralKeyStore
from .metrics import Metrics, metrics_endpoint
from .node import Node, new_node_id
from .preauth import install_accept_error_filter
from .preview_rest import ROUTES as PREVIEW_REST_ROUTES
from .profiles import gateway_config, pipelines_from_config
from .realtime_ws import realtime_endpoint
from .routing import ModelRouter
from .settings import Settings
from .state import ServerState

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
    if settings.server.pipeline not in ("default", "builtin"):
        raise ValueError(f"unknown pipeline {settings.server.pipeline!r}: expected 'default' or 'builtin'")
    builtin = settings.server.pipeline == "builtin"
    return pipelines_from_config(
        gateway_config(settings),
        default=(lambda cache: builtin_pipeline()) if builtin else None,
        source=settings.server.config_file or "config",
        deadlines=settings.backend.deadlines(),
    )


def _observe_stage(metrics: Metrics, profile: str, stage: str, seconds: float) -> None:
    metrics.response_stages.observe(seconds, profile, stage)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that left while its request body was being read (or that missed the body
    deadline, server/preauth.py): nothing to answer, nothing to log (issue 17)."""
    log.debug("client left during %s %s", request.method, request.url.path)
    return Response(status_code=400)


def default_vad() -> VAD | None:
    """Silero VAD; ``None`` (with one warning) when the speech extra is not installed."""
    try:
        extras.require("speech", "Local turn detection (server_vad, semantic_vad)")
    except extras.MissingExtra as exc:
        log.warning("%s. Until then sessions of the local pipeline detect no turns: clients "
                    "commit their audio (input_audio_buffer.commit). Relayed sessions are "
                    "not affected.", exc)
        return None
    from ..pipeline.vad_silero import SileroVAD

    return SileroVAD()


def preload_extras() -> None:
    """Import the MCP client (about half a second) at start-up when its extra is installed,
    not in the event loop of the first session that lists MCP tools (transport/connection.py
    imports it lazily, so that the base install runs without it)."""
    if extras.installed("mcp"):
        importlib.import_module("rtgate.mcp.client")


def sip_call_routes() -> list[BaseRoute]:
    """``…/realtime/calls/{call_id}/accept``, ``reject`` and ``refer`` (server/sip_routes.py);
    without the sip extra no SIP call exists, and these paths say which extra is missing."""
    if extras.installed("sip"):
        from .sip_routes import ROUTES

        return list(ROUTES)

    missing = extras.MissingExtra("sip", "SIP (phone calls)", extras.missing("sip"))

    async def sip_not_installed(request: Request) -> Response:
        try:
            authenticate(request, allow_ephemeral=False)
        except RestError as exc:
            return error_response(exc.status, exc.error)
        return error_response(501, RealtimeError(
            f"This rtgate server takes no SIP calls. {missing}.", "sip_not_installed",
            type="server_error"))

    return [Route(f"{prefix}/realtime/calls/{{call_id}}/{action}", sip_not_installed,
                  methods=["POST"])
            for prefix in CALL_PREFIXES for action in ("accept", "reject", "refer")]


def create_app(
    settings: Settings,
    *,
    profiles: PipelineFactory = build_profiles,
    vad_factory: Callable[[], VAD | None] = default_vad,
    on_ready: Callable[[], object] | None = None,
    node: Node | None = None,
) -> Starlette:
    """Build the app; models load and warm up in the lifespan, before the first session.

    ``on_ready`` runs once start-up is complete, before the first request is served
    (``rtgate serve`` freezes the start-up heap there: server/heap.py). ``node`` is this
    process in its deployment (server/node.py; default: a process on its own). With
    ``settings.redis_url`` the lifespan joins the cluster (:mod:`rtgate.cluster`) and
    leaves it at shutdown. ``app.state.drain`` exists from the start, so that the server
    can begin a drain whatever state the lifespan is in (server/drain.py).
    """
    node = node if node is not None else Node(new_node_id())
    drain = Drain()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from ..transport.vad import VadService

        install_accept_error_filter(asyncio.get_running_loop())  # issue 17: no EMFILE flood
        pipelines = profiles(settings)
        preload_extras()
        vad_model = vad_factory()
        vad = VadService(vad_model) if vad_model is not None else None
        for pipeline in pipelines.values():
            await pipeline.warm_up()
        if vad is not None:
            await vad.start()
        ephemeral = EphemeralKeyStore.for_deployment(settings.auth.api_keys)
        metrics = Metrics(SCHEDULER)
        for name, pipeline in pipelines.items():
            pipeline.on_stage = functools.partial(_observe_stage, metrics, name)
        admission = Admission(
            SCHEDULER,
            max_conversations=settings.capacity.max_conversations or auto_conversations(),
            overload_late_s=settings.capacity.overload_late_s or math.inf,
            refused=metrics.sessions_refused,
        )
        log.info(
            "admission: %d conversations at once (max_conversations), refused while the "
            "models run over %.1f s late (overload_late_s)",
            admission.max_conversations, admission.overload_late_s,
        )
        node.cluster = await join_cluster(settings, node)
        if settings.server.otlp_traces_endpoint:  # turn traces of sessions that set `tracing`
            tracing.configure(settings.server.otlp_traces_endpoint)
        app.state.rtgate = ServerState(
            settings=settings,
            auth=Authenticator(settings.auth.api_keys, ephemeral=ephemeral),
            router=ModelRouter.from_config(pipelines, gateway_config(settings)),
            vad=vad,
            ephemeral=ephemeral,
            calls=CallRegistry(settings),
            metrics=metrics,
            admission=admission,
            drain=drain,
            node=node,
        )
        app.state.sip = await start_sip(settings, app.state.rtgate)
        reporter = asyncio.create_task(_report(app.state.rtgate, settings.cluster.cluster_heartbeat_s),
                                       name="rtgate:cluster-report")
        if on_ready is not None:
            on_ready()
        log.info("rtgate ready: profiles %s", ", ".join(pipelines))
        try:
            yield
        finally:
            reporter.cancel()
            tracing.shutdown()
            if node.cluster is not None:
                await node.cluster.aclose()
            await app.state.rtgate.calls.aclose()
            if app.state.sip is not None:  # after the calls: their BYEs go out on it
                await app.state.sip.aclose()
            if vad is not None:
                await vad.stop()
            for pipeline in pipelines.values():
                await pipeline.aclose()

    async def healthz(request: Request) -> JSONResponse:
        """Alive: the process answers (a liveness probe); never needs a key."""
        state = request.app.state.rtgate
        return JSONResponse({"status": "ok", "sessions": state.active_sessions,
                             "node": node.id, "pid": os.getpid()})

    async def readyz(request: Request) -> JSONResponse:
        """Ready for new sessions: 200, or 503 with the reason (a readiness probe)."""
        state = request.app.state.rtgate
        admission = state.admission
        body = {"node": node.id, "sessions": state.active_sessions,
                "conversations": admission.conversations() if admission else 0,
                "max_conversations": admission.max_conversations if admission else 0}
        if drain.draining:
            return JSONResponse({"status": "draining", "reason": "shutting down: no new "
                                 "sessions", **body}, status_code=503)
        if settings.cluster.redis_url:
            body["redis"] = "reachable" if node.cluster and node.cluster.reachable else "unreachable"
            if body["redis"] == "unreachable" and settings.cluster.ready_requires_redis:
                return JSONResponse({"status": "degraded", "reason": "Redis is unreachable",
                                     **body}, status_code=503)
        return JSONResponse({"status": "ready", **body})

    routes = [
        WebSocketRoute("/openai/v1/realtime", realtime_endpoint),
        WebSocketRoute("/v1/realtime", realtime_endpoint),
        WebSocketRoute("/openai/realtime", realtime_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/admin/usage", usage_endpoint),
        *(Route(p, create_client_secret, methods=["POST"]) for p in CLIENT_SECRET_PATHS),
        *CALL_ROUTES,
        *sip_call_routes(),
        *PREVIEW_REST_ROUTES,
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ClientDisconnect: _client_gone})
    app.state.drain = drain
    app.state.node = node
    app.state.sip = None
    return app


async def start_sip(settings: Settings, state: ServerState) -> object | None:
    """The SIP endpoint (server/sip.py), listening, when ``sip_port`` is set."""
    if not settings.sip.port:
        return None
    from .sip import SipEndpoint

    endpoint = SipEndpoint(settings, state)
    await endpoint.start()
    return endpoint


async def join_cluster(settings: Settings, node: Node) -> ClusterStore:
    """Open this process's cluster store: in Redis with ``settings.redis_url``, else in
    memory (this process is the whole cluster; per-key limits hold for it alone)."""
    member = replace(new_member(node.url or ""), id=node.id)
    store = open_store(settings.cluster.redis_url, member, prefix=settings.cluster.redis_prefix,
                       heartbeat_s=settings.cluster.cluster_heartbeat_s)
    await store.start()
    if settings.cluster.redis_url:
        log.info("cluster: joined as %s (%s); Redis %s", node.id, node.url or "no internal URL",
                 "reachable" if store.reachable else
                 "unreachable: limits fail open until it returns")
    return store


async def _report(state: ServerState, every_s: float) -> None:
    """Tell the cluster this process's sessions and drain state, once per heartbeat."""
    while True:
        if state.node is not None and state.node.cluster is not None:
            state.node.cluster.report(sessions=state.active_sessions, draining=state.drain.draining)
        await asyncio.sleep(every_s)
