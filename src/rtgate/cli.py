"""The ``rtgate`` command line: ``serve``, ``migrate check``, ``migrate probe``.

Heavy imports (uvicorn, models) happen inside the subcommand that needs them, so
``rtgate --help`` answers at once. Exit codes: 0 success, 1 failure/findings, 2 usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .server.settings import Settings

DESCRIPTION = """\
rtgate: a self-hosted server for the OpenAI / Azure OpenAI Realtime API (GA protocol).

Point an official client at it, e.g. openai-python:
  client = AsyncOpenAI(base_url="http://127.0.0.1:8000/openai/v1", api_key="any")
  async with client.realtime.connect(model="gpt-realtime") as conn: ...
"""


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the Realtime server",
        description="Run the Realtime server. Every setting can also be given as an "
        "RTGATE_<NAME> environment variable (e.g. RTGATE_API_KEYS=k1,k2); flags win. "
        "Start-up prints every setting by group; docs/configuration.md lists them.",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8000)")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept this API key (repeatable). Prefer RTGATE_API_KEYS: flags show in `ps`. "
        "With no key configured any key is accepted and only loopback may be bound.",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address with no API keys (anyone may connect)",
    )
    p.add_argument(
        "--pipeline",
        choices=["default", "builtin"],
        help="'default': the embedded offline speech stack (Whisper tiny.en, SmolLM2-135M, "
        "espeak-ng; needs the speech extra); 'builtin': a deterministic echo model with tone "
        "audio, no models",
    )
    p.add_argument("--config", dest="config_file", metavar="FILE",
                   help="TOML file with pipeline profiles, cloud upstreams and model routes "
                   "(see docs/configuration.md)")
    p.add_argument("--session-lifetime", type=float, dest="session_lifetime_s", metavar="SECONDS",
                   help="maximum session duration (default 3600)")
    p.add_argument("--max-sessions", type=int, help="concurrent sessions (default 1000)")
    p.add_argument("--max-conversations", type=int, metavar="N",
                   help="concurrent local sessions that the speech models transcribe or answer; "
                   "more are refused with server_busy so that the running ones keep their "
                   "voice latency (default 0: automatic, 4 per usable core; sessions that "
                   "only listen for turns do not count)")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help="worker processes sharing the port, each with its own models and its "
                   "share of the cores ('auto': one per usable core; default 1)")
    p.add_argument("--redis-url", metavar="URL",
                   help="Redis shared by every node and worker: membership, the WebRTC call "
                   "directory, per-key limits and usage (prefer RTGATE_REDIS_URL when it "
                   "holds a password; see docs/deployment.md)")
    p.add_argument("--drain-timeout", type=float, dest="drain_timeout_s", metavar="SECONDS",
                   help="on SIGTERM, how long live sessions may go on while no new ones are "
                   "taken; then they end with server_shutting_down (default 30)")
    p.add_argument("--advertise-host", metavar="HOST",
                   help="address other nodes and workers reach this one on (default: the bound "
                   "address, else the host name)")
    p.add_argument("--internal-port", type=int, metavar="PORT",
                   help="first port of the workers' internal listeners (worker i: PORT+i; "
                   "default 0: free ports)")
    p.add_argument("--ice-server", action="append", dest="webrtc_ice_servers", metavar="URL",
                   help="STUN or TURN server for WebRTC calls, e.g. stun:stun.example.org:3478 or "
                   "turn:turn.example.org:3478?transport=udp (repeatable; default: host "
                   "candidates only, see docs/webrtc.md)")
    p.add_argument("--turn-username", dest="webrtc_turn_username", metavar="NAME",
                   help="username for the turn: servers; give the credential in "
                   "RTGATE_WEBRTC_TURN_CREDENTIAL (flags show in `ps`)")
    p.add_argument("--webrtc-udp-ports", type=_port_range, metavar="MIN-MAX",
                   help="UDP ports for WebRTC calls' host candidates, e.g. 40000-40099 (forward "
                   "them through a NAT; default: any port, see docs/webrtc.md)")
    p.add_argument("--sip-port", type=int, metavar="PORT",
                   help="UDP and TCP port of the SIP endpoint for phone calls (default: no SIP; "
                   "see docs/sip.md)")
    p.add_argument("--sip-host", metavar="ADDRESS",
                   help="address the SIP endpoint binds and puts in SDP answers (default: --host)")
    p.add_argument("--sip-tls-port", type=int, metavar="PORT",
                   help="TCP port of SIP over TLS (sips:, e.g. 5061; needs RTGATE_SIP_TLS_CERTFILE "
                   "and RTGATE_SIP_TLS_KEYFILE; default: no TLS)")
    p.add_argument("--sip-allowed-source", action="append", dest="sip_allowed_sources",
                   metavar="CIDR", help="address or CIDR allowed to send SIP (repeatable; "
                   "default: loopback only)")
    p.add_argument("--webhook-url", action="append", dest="webhook_urls", metavar="URL",
                   help="where realtime.call.incoming webhooks go (repeatable); give the "
                   "whsec_ secret in RTGATE_WEBHOOK_SECRET (flags show in `ps`)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"],
                   help="event loop: 'auto' (default) runs uvloop when it is installed, else "
                   "asyncio; 'asyncio' forces the standard loop; 'uvloop' needs `pip install uvloop`")


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return 0
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or 'auto', got {text!r}")
    return count


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        if sep:
            return int(low), int(high)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected MIN-MAX, e.g. 40000-40099, got {text!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def event_loop_name(choice: str) -> str | None:
    """The loop uvicorn runs for ``--loop choice``; ``None`` if it asks for a missing uvloop.

    ``auto`` is uvicorn's rule: uvloop whenever it can be imported, else asyncio. The
    import is tried (not only looked up) for the same reason uvicorn tries it: a uvloop
    that is present but fails to import must not be chosen.
    """
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        installed = False
    else:
        installed = True
    if choice == "uvloop":
        return "uvloop" if installed else None
    return "uvloop" if installed else "asyncio"


BLAS_THREADS_ENV = ("OPENBLAS_NUM_THREADS", "1")
"""NumPy's OpenBLAS runs the server's small matrix products (resampling in the VAD
batches) on one thread. With its default of one thread per core, its idle workers spin
after every product: a profile of eight conversations on two cores found them using 9 %
of the server's CPU, beside the speech models that need those cores. Set before NumPy is
imported (here, and inherited by ``--workers`` processes); an operator's value is kept."""


def serve(args: argparse.Namespace) -> int:
    import logging

    os.environ.setdefault(*BLAS_THREADS_ENV)
    from .server.app import build_profiles, create_app
    from .server.auth import install_log_redaction
    from .server.config import ConfigError
    from .server.heap import freeze_startup_heap
    from .server.settings import Settings

    overrides = {
        k: getattr(args, k, None)
        for k in ("host", "port", "allow_unauthenticated", "pipeline", "session_lifetime_s",
                  "max_sessions", "max_conversations", "log_level", "config_file",
                  "webrtc_turn_username", "loop", "workers", "redis_url", "drain_timeout_s",
                  "advertise_host", "internal_port", "sip_port", "sip_host", "sip_tls_port")
    }
    if args.webrtc_ice_servers:
        overrides["webrtc_ice_servers"] = tuple(args.webrtc_ice_servers)
    for name in ("sip_allowed_sources", "webhook_urls"):
        if getattr(args, name, None):
            overrides[name] = tuple(getattr(args, name))
    if args.webrtc_udp_ports:
        overrides["webrtc_udp_port_min"], overrides["webrtc_udp_port_max"] = args.webrtc_udp_ports
    if args.api_keys:
        overrides["api_keys"] = tuple(args.api_keys)
    try:
        settings = Settings.from_env(**overrides)
    except (ValueError, TypeError) as exc:
        print(f"rtgate serve: {exc}", file=sys.stderr)
        return 2
    if (settings.open_access and not _is_loopback(settings.server.host)
            and not settings.auth.allow_unauthenticated):
        print(
            f"rtgate serve: refusing to bind {settings.server.host} with no API keys: anyone could "
            "connect. Set RTGATE_API_KEYS (or --api-key), or pass --allow-unauthenticated.",
            file=sys.stderr,
        )
        return 2
    from .extras import MissingExtra

    try:
        require_extras(settings)
    except MissingExtra as exc:
        print(f"rtgate serve: {exc}", file=sys.stderr)
        return 2
    loop = event_loop_name(settings.server.loop)
    if loop is None:
        print("rtgate serve: --loop uvloop: uvloop is not installed (pip install uvloop; "
              "not available on Windows). Use --loop asyncio.", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()
    log = logging.getLogger("rtgate")
    log.info("rtgate %s settings:\n%s", __version__, settings.describe())
    log.info("event loop: %s", loop)
    if settings.open_access:
        log.warning("no API keys configured: any key is accepted (bound to %s only)", settings.server.host)
    from .server.workers import run_workers, worker_count

    if worker_count(settings) > 1:
        try:  # a bad config file is a usage error here, before any worker starts
            build_profiles(settings)
        except (ConfigError, MissingExtra) as exc:
            print(f"rtgate serve: {exc}{_speech_hint(exc)}", file=sys.stderr)
            return 2
        return run_workers(settings, worker_count(settings), loop)
    try:
        # Engines are only constructed here (models load at start-up), so a bad config
        # file is a usage error before anything heavy runs.
        pipelines = build_profiles(settings)
    except (ConfigError, MissingExtra) as exc:
        print(f"rtgate serve: {exc}{_speech_hint(exc)}", file=sys.stderr)
        return 2
    from .server.node import Node, advertise_host, http_url, new_node_id
    from .server.serve import run_process

    # One process: other nodes (with Redis) reach it on its public port.
    address = advertise_host(settings.server.host, settings.cluster.advertise_host)
    node = Node(new_node_id(), url=http_url(address, settings.server.port))
    app = create_app(settings, profiles=lambda _settings: pipelines, on_ready=freeze_startup_heap,
                     node=node)
    run_process(settings, app, loop)
    return 0


def require_extras(settings: Settings) -> None:
    """Raise :class:`~rtgate.extras.MissingExtra` for a face the settings switch on whose
    extra is not installed (the speech engines are checked where they are built)."""
    from .extras import require

    if settings.sip.port or settings.sip.tls_port:
        require("sip", "--sip-port (phone calls over SIP)")
    if settings.cluster.redis_url:
        require("cluster", "--redis-url (cluster state in Redis)")
    if settings.server.otlp_traces_endpoint:
        require("tracing", "otlp_traces_endpoint (OTLP turn traces)")


def _speech_hint(exc: Exception) -> str:
    if getattr(exc, "extra", None) != "speech":
        return ""
    return ("; without it, serve the builtin echo pipeline (--pipeline builtin) or profiles of "
            "network engines and upstreams (--config, docs/configuration.md)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["migrate"]:
        from .migrate.cli import main as migrate_main

        return migrate_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="rtgate", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rtgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    sub.add_parser("migrate", help="check and fix Preview-era Realtime code; probe an endpoint "
                   "(see `rtgate migrate --help`)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
