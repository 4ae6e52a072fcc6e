"""A tiny harness for the sans-I/O session core: JSON in, events and effects out.

Client events go through the real decoder (:func:`decode_client_event`) and then
``Session.handle`` or ``Session.report``, exactly as a transport drives them; time is a
number the test advances. Every server event the core emits is validated strictly against
the official SDK's models before a test sees it.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any, Literal

from rtgate.core import effects as fx
from rtgate.core.ids import IdFactory
from rtgate.core.limits import CoreLimits
from rtgate.core.session import Output, Session
from rtgate.protocol.client_events import DecodeLimits, decode_client_event
from rtgate.protocol.errors import RealtimeError
from rtgate.testing.validate import validate_server_event

T0 = 1_700_000_000.0
FRAME_MS = 32.0
BYTES_PER_MS = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}

Event = dict[str, Any]
ANY = "<any>"
"""``assert_error`` default for ``param`` / ``event_id``: not checked."""


def checked(outputs: list[Output]) -> list[Output]:
    """Validate every server event in ``outputs`` against the SDK; return them unchanged."""
    for out in outputs:
        if isinstance(out, dict):
            validate_server_event(out)
            assert out["event_id"].startswith("event_"), out
    return outputs


def events(outputs: list[Output]) -> list[Event]:
    return [o for o in outputs if isinstance(o, dict)]


def effects(outputs: list[Output]) -> list[fx.Effect]:
    return [o for o in outputs if not isinstance(o, dict)]


def types(outputs: list[Output]) -> list[str]:
    return [e["type"] for e in events(outputs)]


def collapse_deltas(seq: list[str]) -> list[str]:
    """Runs of the same ``*.delta`` type collapse to one entry."""
    out: list[str] = []
    for t in seq:
        if not (out and out[-1] == t and t.endswith(".delta")):
            out.append(t)
    return out


def assert_events(outputs: list[Output], expected: list[str], *, collapse: bool = False) -> None:
    """The server events in ``outputs`` have exactly the ``expected`` types, in order."""
    got = types(outputs)
    if collapse:
        got = collapse_deltas(got)
    assert got == expected, f"expected {expected}\n     got {got}"


def first(outputs: list[Output], type_: str) -> Event:
    for event in events(outputs):
        if event["type"] == type_:
            return event
    raise AssertionError(f"no {type_} in {types(outputs)}")


def assert_error(
    event: Event | list[Output],
    *,
    code: str | None,
    param: str | None = ANY,
    event_id: str | None = ANY,
) -> Event:
    """``event`` (or the only event of a list) is an ``error`` with this code/param/event_id."""
    if isinstance(event, list):
        evs = events(event)
        assert len(evs) == 1, f"expected one error event, got {types(event)}"
        event = evs[0]
    assert event["type"] == "error", event
    error = event["error"]
    assert error["type"] == "invalid_request_error", error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if param != ANY:
        assert error["param"] == param, error
    if event_id != ANY:
        assert error["event_id"] == event_id, error
    return event


def silence(ms: float, fmt: str = "audio/pcm") -> bytes:
    return bytes(int(ms * BYTES_PER_MS[fmt]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def user_text(text: str, **extra: Any) -> Event:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
            **extra}


class Harness:
    """One :class:`Session` plus a clock; every method returns checked outputs."""

    def __init__(
        self,
        *,
        kind: Literal["realtime", "transcription"] = "realtime",
        model: str | None = "gpt-realtime",
        limits: CoreLimits | None = None,
        decode_limits: DecodeLimits | None = None,
        plays_audio: bool = False,
    ) -> None:
        self.now = T0
        self.decode_limits = decode_limits or DecodeLimits()
        self.session = Session(
            session_id="sess_unit",
            kind=kind,
            model=model if kind == "realtime" else None,
            limits=limits,
            now=self.now,
            ids=IdFactory(random.Random(0)),
            plays_audio=plays_audio,
        )
        self.created = checked(self.session.start())

    # ------------------------------------------------------------------ client events

    def send(self, event: Event) -> list[Output]:
        """Encode ``event`` as a text frame, decode it, and hand it to the session."""
        decoded = decode_client_event(json.dumps(event), self.decode_limits)
        if isinstance(decoded, RealtimeError):
            return checked(self.session.report(decoded))
        return checked(self.session.handle(decoded, self.now))

    def update(self, session: Event, **extra: Any) -> list[Output]:
        return self.send({"type": "session.update", "session": session, **extra})

    def append(self, data: bytes, **extra: Any) -> list[Output]:
        return self.send({"type": "input_audio_buffer.append", "audio": b64(data), **extra})

    def commit(self, **extra: Any) -> list[Output]:
        return self.send({"type": "input_audio_buffer.commit", **extra})

    def create_item(self, item: Event, **extra: Any) -> list[Output]:
        return self.send({"type": "conversation.item.create", "item": item, **extra})

    def create_response(self, response: Event | None = None, **extra: Any) -> list[Output]:
        event: Event = {"type": "response.create", **extra}
        if response is not None:
            event["response"] = response
        return self.send(event)

    def start_response(self, response: Event | None = None) -> str:
        """``response.create``; returns the new response id (from the StartResponse effect)."""
        return start_effect(self.create_response(response)).plan.response_id

    # ------------------------------------------------------------------ backend and time

    def text(self, response_id: str, *deltas: str) -> list[Output]:
        out: list[Output] = []
        for delta in deltas:
            out += self.session.on_response_text(response_id, delta)
        return checked(out)

    def audio(self, response_id: str, audio: bytes, transcript: str) -> list[Output]:
        return checked(self.session.on_response_audio(response_id, audio, transcript))

    def done(self, response_id: str, **kw: Any) -> list[Output]:
        return checked(self.session.on_response_done(response_id, self.now, **kw))

    def vad(self, start_ms: float, probabilities: list[float]) -> list[Output]:
        return checked(self.session.on_vad(start_ms, FRAME_MS, probabilities, self.now))

    def tick(self, now: float) -> list[Output]:
        self.now = now
        return checked(self.session.tick(now))


def start_effect(outputs: list[Output]) -> fx.StartResponse:
    starts = [e for e in effects(outputs) if isinstance(e, fx.StartResponse)]
    assert len(starts) == 1, f"expected one StartResponse, got {effects(outputs)} / {types(outputs)}"
    return starts[0]
