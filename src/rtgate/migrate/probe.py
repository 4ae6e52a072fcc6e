"""``rtgate migrate probe URL``: walk the migration checklist's verification items live.

Checks, in order, on one WebSocket session (docs/protocol.md, Endpoints, Session objects and Event sequences):

1. ``ga-url`` — the GA URL (``…/realtime?model=…``, no ``api-version``) answers with
   ``session.created`` as its first event.
2. ``session-update-typed`` — ``session.update`` with ``session.type`` is accepted
   (``session.updated``).
3. ``session-update-untyped`` — one without ``session.type`` is rejected with an
   ``error`` (code ``missing_required_parameter``).
4. ``text-turn`` — a text turn streams ``response.output_text.delta`` and
   ``conversation.item.added``, and no Preview event name appears.
5. ``audio-turn`` — the bundled utterance (24 kHz mono PCM16) is appended, committed and
   answered with ``response.output_audio.delta`` audio.
6. ``client-secret`` / ``ephemeral-session`` (``--webrtc``) — ``POST …/realtime/client_secrets``
   mints a key, and that key opens a session.

Contracts: each wait is bounded by ``timeout`` seconds (no sleeps); the API key is sent
only in headers and never printed; a check that cannot run because an earlier one broke
the connection is reported as failed with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from rtgate.protocol.dialects import SERVER_EVENT_RENAMES

PREVIEW_ONLY_EVENTS = frozenset(SERVER_EVENT_RENAMES) | {"conversation.created"}
CHUNK_MS = 100
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
UTTERANCE = "utterance.wav"


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """What to probe and how long to wait for each expected event."""

    url: str
    api_key: str
    model: str = "gpt-realtime"
    webrtc: bool = False
    timeout: float = 15.0


@dataclass(slots=True)
class CheckResult:
    """One row of the pass/fail table."""

    name: str
    passed: bool
    detail: str
    skipped: bool = False

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")


@dataclass(slots=True)
class _Urls:
    ws: str
    rest: str  # API base over HTTP(S), e.g. https://host/openai/v1
    had_api_version: bool
    azure: bool


def resolve_urls(url: str, model: str) -> _Urls:
    """The GA WebSocket URL and REST base for a user-given base or WebSocket URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"URL must be http(s):// or ws(s):// with a host, got {url!r}")
    secure = parts.scheme in ("https", "wss")
    path = parts.path.rstrip("/")
    if not path.endswith("/realtime"):
        path += "/realtime"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    had_api_version = any(k == "api-version" for k, _ in query)
    query = [(k, v) for k, v in query if k != "api-version"]
    if not any(k in ("model", "deployment", "call_id") for k, _ in query):
        query.append(("model", model))
    ws = urllib.parse.urlunsplit(
        ("wss" if secure else "ws", parts.netloc, path, urllib.parse.urlencode(query), "")
    )
    rest_path = path[: -len("/realtime")]
    rest = urllib.parse.urlunsplit(("https" if secure else "http", parts.netloc, rest_path, "", ""))
    return _Urls(ws, rest, had_api_version, parts.netloc.endswith(".azure.com"))


def _headers(key: str, azure: bool) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if azure:
        headers["api-key"] = key
    return headers


def load_utterance() -> bytes:
    """The bundled utterance as raw PCM16 mono 24 kHz bytes."""
    ref = resources.files("rtgate.migrate").joinpath("data", UTTERANCE)
    with ref.open("rb") as fh, wave.open(fh) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (24000, 1, 2):
            raise ValueError("bundled utterance must be 24 kHz mono PCM16")
        frames: bytes = wav.readframes(wav.getnframes())
        return frames


class _Session:
    """One WebSocket connection with a bounded ``expect`` and a log of event types."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.types: list[str] = []

    async def send(self, event: dict[str, object]) -> None:
        await self.ws.send(json.dumps(event))

    async def expect(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Events received until ``done(event)`` is true (inclusive); raises TimeoutError."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(self.timeout):
            while True:
                raw = await self.ws.recv()
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", errors="replace")
                event = json.loads(raw)
                self.types.append(str(event.get("type")))
                events.append(event)
                if done(event):
                    return events


def _preview_names(types: list[str]) -> list[str]:
    return sorted({t for t in types if t in PREVIEW_ONLY_EVENTS})


def _is(kind: str, event_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def match(event: dict[str, Any]) -> bool:
        if event.get("type") == kind:
            return True
        error = event.get("error") if event.get("type") == "error" else None
        return bool(event_id and isinstance(error, dict) and error.get("event_id") == event_id)

    return match


async def _ga_url(s: _Session, urls: _Urls) -> CheckResult:
    first = (await s.expect(lambda e: True))[0]
    ok = first.get("type") == "session.created" and not urls.had_api_version
    detail = f"first event {first.get('type')!r}"
    if urls.had_api_version:
        detail += "; the URL given carries api-version, which GA URLs must not"
    return CheckResult("ga-url", ok, detail)


async def _typed_update(s: _Session) -> CheckResult:
    await s.send(
        {
            "type": "session.update",
            "event_id": "probe_typed",
            "session": {"type": "realtime", "output_modalities": ["text"]},
        }
    )
    last = (await s.expect(_is("session.updated", "probe_typed")))[-1]
    if last.get("type") == "session.updated":
        return CheckResult("session-update-typed", True, "session.updated")
    error = last.get("error", {})
    return CheckResult("session-update-typed", False, f"error {error.get('code')!r}")


async def _untyped_update(s: _Session) -> CheckResult:
    await s.send(
        {
            "type": "session.update",
            "event_id": "probe_untyped",
            "session": {"output_modalities": ["text"]},
        }
    )
    last = (await s.expect(_is("session.updated", "probe_untyped")))[-1]
    if last.get("type") == "session.updated":
        return CheckResult("session-update-untyped", False, "accepted without session.type")
    error = last.get("error", {})
    ok = error.get("code") == "missing_required_parameter"
    return CheckResult(
        "session-update-untyped", ok, f"error {error.get('code')!r} (param {error.get('param')!r})"
    )


async def _text_turn(s: _Session) -> CheckResult:
    await s.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Reply with one word: hello."}],
            },
        }
    )
    await s.send({"type": "response.create"})
    events = await s.expect(_is("response.done"))
    types = [str(e.get("type")) for e in events]
    missing = [t for t in ("response.output_text.delta", "conversation.item.added") if t not in types]
    preview = _preview_names(types)
    text = "".join(str(e.get("delta", "")) for e in events if e["type"] == "response.output_text.delta")
    ok = not missing and not preview
    detail = f"text {text[:40]!r}" if ok else f"missing {missing}, Preview names {preview}"
    return CheckResult("text-turn", ok, detail)


async def _audio_turn(s: _Session, pcm: bytes) -> CheckResult:
    await s.send(
        {
            "type": "session.update",
            "event_id": "probe_audio",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {"input": {"turn_detection": None}},
            },
        }
    )
    await s.expect(_is("session.updated", "probe_audio"))
    step = 24000 * 2 * CHUNK_MS // 1000
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        await s.send({"type": "input_audio_buffer.append", "audio": chunk})
    await s.send({"type": "input_audio_buffer.commit"})
    await s.send({"type": "response.create"})
    events = await s.expect(_is("response.done"))
    audio = sum(
        len(base64.b64decode(e.get("delta", "")))
        for e in events
        if e.get("type") == "response.output_audio.delta"
    )
    types = [str(e.get("type")) for e in events]
    preview = _preview_names(types)
    committed = "input_audio_buffer.committed" in types
    ok = audio > 0 and committed and not preview
    detail = f"{len(pcm) // 48} ms in, {audio // 48} ms of audio out"
    if not committed:
        detail += "; no input_audio_buffer.committed"
    if preview:
        detail += f"; Preview names {preview}"
    return CheckResult("audio-turn", ok, detail)


def _post_json(url: str, body: dict[str, object], headers: dict[str, str], timeout: float) -> Any:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the user chose the URL
        url,
        data=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


async def _client_secret(config: ProbeConfig, urls: _Urls) -> tuple[CheckResult, str | None]:
    body: dict[str, object] = {"session": {"type": "realtime", "model": config.model}}
    url = f"{urls.rest}/realtime/client_secrets"
    try:
        doc = await asyncio.to_thread(
            _post_json, url, body, _headers(config.api_key, urls.azure), config.timeout
        )
    except Exception as exc:  # any HTTP/network failure is the check's result
        return CheckResult("client-secret", False, f"POST {url}: {exc}"), None
    value, expires = doc.get("value"), doc.get("expires_at")
    if isinstance(value, str) and value and isinstance(expires, int):
        return CheckResult("client-secret", True, f"expires in {expires - int(time.time())} s"), value
    return CheckResult("client-secret", False, "response lacks value/expires_at"), None


async def probe(config: ProbeConfig) -> list[CheckResult]:
    """Run every check; never raises for endpoint failures (they become failed rows)."""
    from websockets.asyncio.client import connect

    urls = resolve_urls(config.url, config.model)
    pcm = load_utterance()
    results: list[CheckResult] = []
    steps: list[tuple[str, Callable[[_Session], Any]]] = [
        ("ga-url", lambda s: _ga_url(s, urls)),
        ("session-update-typed", _typed_update),
        ("session-update-untyped", _untyped_update),
        ("text-turn", _text_turn),
        ("audio-turn", lambda s: _audio_turn(s, pcm)),
    ]
    try:
        async with connect(
            urls.ws,
            additional_headers=_headers(config.api_key, urls.azure),
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=config.timeout,
        ) as ws:
            session = _Session(ws, config.timeout)
            for name, step in steps:
                try:
                    results.append(await step(session))
                except TimeoutError:
                    results.append(CheckResult(name, False, f"no answer in {config.timeout} s"))
    except Exception as exc:  # connection refused, 401, closed mid-way
        done = {r.name for r in results}
        reason = f"connection failed: {type(exc).__name__}: {exc}"
        results += [CheckResult(n, False, reason) for n, _ in steps if n not in done]
    if config.webrtc:
        results += await _webrtc(config, urls)
    return results


async def _webrtc(config: ProbeConfig, urls: _Urls) -> list[CheckResult]:
    from websockets.asyncio.client import connect

    minted, key = await _client_secret(config, urls)
    if key is None:
        return [minted, CheckResult("ephemeral-session", False, "no key to try", skipped=True)]
    try:
        async with connect(urls.ws, additional_headers=_headers(key, False)) as ws:
            first = (await _Session(ws, config.timeout).expect(lambda e: True))[0]
    except Exception as exc:
        return [minted, CheckResult("ephemeral-session", False, f"{type(exc).__name__}: {exc}")]
    ok = first.get("type") == "session.created"
    return [minted, CheckResult("ephemeral-session", ok, f"first event {first.get('type')!r}")]


def run_probe(config: ProbeConfig) -> list[CheckResult]:
    """Synchronous :func:`probe` (for the command line)."""
    resolve_urls(config.url, config.model)  # usage errors surface before any I/O
    return asyncio.run(probe(config))


@dataclass(slots=True)
class _Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def render(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        return "\n".join(f"{a:<{width}}  {b:<4}  {c}" for a, b, c in self.rows)


def render_probe(results: list[CheckResult], fmt: str = "text") -> str:
    """The pass/fail table (``text``) or a JSON document (``json``)."""
    passed = all(r.passed or r.skipped for r in results)
    if fmt == "json":
        doc = {
            "passed": passed,
            "checks": [{"name": r.name, "result": r.status.lower(), "detail": r.detail} for r in results],
        }
        return json.dumps(doc, indent=2) + "\n"
    table = _Table([("check", "", "detail")])
    table.rows += [(r.name, r.status, r.detail) for r in results]
    ok = sum(1 for r in results if r.passed)
    return f"{table.render()}\n\n{ok}/{len(results)} checks passed\n"
