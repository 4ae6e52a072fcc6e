"""The session core: one GA Realtime session, sans I/O (DESIGN.md "pure core").

:class:`Session` takes decoded client events, VAD probabilities, backend results and the
current time, and returns what to do: server events (plain dicts, ready to encode) and
:mod:`~rtgate.core.effects`. It never touches a socket, a task or the wall clock, so
every behaviour here is tested without an event loop.

Rules it enforces (docs/protocol.md, Session objects to Event sequences):
``session.created`` first; updates applied whole or not at all; one active response in the
default conversation; commits need 100 ms; the voice is fixed once audio was produced; the
session expires after its lifetime. On a call (``plays_audio``) it also owns the playback of
the answers — what was played, barge-in, truncation — from the player's reports
(core/playback.py).
"""

from __future__ import annotations

import binascii
import contextlib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..audio import bytes_per_ms, decode_to_pcm16, format_rate, resample_pcm16
from ..protocol import client_events as ce
from ..protocol.errors import SERVER_SHUTTING_DOWN as SHUTTING_DOWN
from ..protocol.errors import RealtimeError, echo, invalid_value
from ..protocol.items import ALLOWED_CONTENT, item_wire_without_audio
from ..protocol.session import (
    RealtimeSessionConfig,
    SessionConfig,
    TranscriptionSessionConfig,
    apply_update,
    check_tool_choice,
    default_config,
    session_wire,
)
from . import effects as fx
from .conversation import Conversation, StoredItem, not_found
from .ids import IdFactory
from .images import check_image
from .input_audio import InputAudioBuffer
from .limits import CoreLimits
from .mcp import McpTools, check_mcp_tools
from .playback import Cut, Playback
from .responses import ActiveResponse, ResponseEmitter
from .turn_detection import (
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnQuery,
    VadParams,
    VadState,
)

Output = dict[str, Any] | fx.Effect

LIVE_TRANSCRIPTION_MODELS = ("gpt-realtime-whisper*", "gpt-live-transcribe*")
"""Transcription models that stream deltas while audio is appended (live mode,
docs/protocol.md, Event sequences: Transcription modes)."""


TURN_MODEL_WINDOW_MS = 8000.0
"""Audio a turn-end query carries: the end of the turn, as much as the model reads."""
"""The error code of a session ended by the server's shutdown (the end of a drain)."""

@dataclass(slots=True)
class SessionTotals:
    """What a session has used so far, for per-key usage (server/keys.py): the tokens and
    output audio of its ended responses. Input audio is :attr:`InputAudioBuffer.end_ms`."""

    input_tokens: int = 0
    output_tokens: int = 0
    audio_out_ms: float = 0.0


DEFAULT_RATE_LIMITS = [{"name": "tokens", "limit": 1_000_000, "remaining": 1_000_000, "reset_seconds": 0.0}]


class Session:
    """One Realtime session. Not thread-safe: drive it from one task."""

    def __init__(
        self,
        *,
        session_id: str,
        kind: Literal["realtime", "transcription"] = "realtime",
        model: str | None = None,
        config: SessionConfig | None = None,
        limits: CoreLimits | None = None,
        now: float,
        ids: IdFactory | None = None,
        plays_audio: bool = False,
    ) -> None:
        self.id = session_id
        self.limits = limits or CoreLimits()
        self.ids = ids or IdFactory()
        self.plays_audio = plays_audio
        """The server plays the output audio itself (a WebRTC or SIP call), so the client may
        clear it (``output_audio_buffer.clear``) and a barge-in clears it; over a WebSocket
        the client plays what it receives."""
        self.playback: Playback | None = Playback() if plays_audio else None
        """The account of what the server's player was given and has played (core/playback.py);
        the edge sets its ``sample_rate`` before the session starts."""
        self.config: SessionConfig = config or default_config(kind, model)
        if isinstance(self.config, RealtimeSessionConfig) and model and not self.config.model:
            self.config = self.config.model_copy(update={"model": model})
        self.created_at = now
        self.expires_at = int(now + self.limits.session_lifetime_s)
        self.conversation = Conversation(
            self.ids.new("conv"),
            max_items=self.limits.max_items,
            max_audio_bytes=self.limits.max_conversation_audio_bytes,
        )
        self.buffer = InputAudioBuffer(
            self.config.audio.input.format.type, max_ms=self.limits.max_input_buffer_ms
        )
        self.detector: TurnDetector | None = None
        self._turn_model = False
        self._configure_turn_detection()
        self._speech_item_id: str | None = None
        self._responses: dict[str, ResponseEmitter] = {}
        self.totals = SessionTotals()
        self._default_response: str | None = None
        self._voice_locked = False
        self._idle_deadline: float | None = None
        self.closed = False
        self.rate_limits = DEFAULT_RATE_LIMITS
        self._out: list[Output] = []
        self.mcp = McpTools(self.conversation, self.ids, self._emit, self._effect)
        self.accepts_images = True
        """Whether the model can be shown ``input_image`` parts; the transport sets it from
        the pipeline (core/images.py)."""
        self.custom_voices: frozenset[str] = frozenset()
        """Ids a custom voice ``{"id": ...}`` may name (the profile's TTS; set by the transport)."""

    # ------------------------------------------------------------------ basics

    @property
    def is_transcription(self) -> bool:
        return isinstance(self.config, TranscriptionSessionConfig)

    @property
    def vad_enabled(self) -> bool:
        return self.detector is not None

    @property
    def user_speaking(self) -> bool:
        """Turn detection hears the user speaking now (between ``speech_started`` and
        ``speech_stopped``)."""
        return self.detector is not None and self.detector.state is VadState.SPEAKING

    @property
    def last_speech_end_ms(self) -> float:
        """Where the last frame heard as speech ended (buffer time; 0 without turn detection)."""
        return self.detector.last_speech_end_ms if self.detector is not None else 0.0

    @property
    def live_transcription(self) -> bool:
        """Live mode (docs/protocol.md, Event sequences: Transcription modes): a live
        transcription model with ``turn_detection: null``.

        Deltas then stream while audio is appended, under :meth:`reserve_input_item_id`.
        """
        transcription = self.config.audio.input.transcription
        model = transcription.model if transcription is not None else None
        return (
            self.detector is None
            and model is not None
            and any(fnmatch.fnmatchcase(model, p) for p in LIVE_TRANSCRIPTION_MODELS)
        )

    def reserve_input_item_id(self) -> str:
        """The id the next commit of the input buffer will use (reserved now if needed).

        Cleared with the buffer (``input_audio_buffer.clear``): the next call reserves a new one.
        """
        if self._speech_item_id is None:
            self._speech_item_id = self.ids.item()
        return self._speech_item_id

    @property
    def active_response_id(self) -> str | None:
        return self._default_response

    def _emit(self, type_: str, **fields: Any) -> None:
        self._out.append({"type": type_, "event_id": self.ids.event(), **fields})

    def _effect(self, effect: fx.Effect) -> None:
        self._out.append(effect)

    def _flush(self) -> list[Output]:
        evicted = self.conversation.evicted
        if evicted:  # the max_items limit dropped the oldest items: say so (issue 17)
            for item_id in evicted:
                self._emit("conversation.item.deleted", item_id=item_id)
            evicted.clear()
        out, self._out = self._out, []
        return out

    def _error(self, error: RealtimeError, event_id: str | None = None) -> None:
        if event_id is not None and error.event_id is None:
            error = error.with_event_id(event_id)
        self._emit("error", error=error.to_wire())

    def wire_session(self) -> dict[str, Any]:
        return session_wire(self.config, session_id=self.id, expires_at=self.expires_at)

    def _configure_turn_detection(self) -> None:
        td = self.config.audio.input.turn_detection
        if td is None:
            self.detector = None
            return
        params = VadParams.from_config(td, turn_model=self._turn_model)
        if self.detector is None:
            self.detector = TurnDetector(params)
        else:
            self.detector.params = params

    def enable_turn_model(self) -> None:
        """The edge can run the turn-end model: ``semantic_vad`` asks it (effect
        :class:`~rtgate.core.effects.PredictTurnEnd`) instead of waiting a silence window."""
        self._turn_model = True
        self._configure_turn_detection()

    # ------------------------------------------------------------------ entry points

    def start(self) -> list[Output]:
        """The first events of the session: ``session.created``."""
        self._emit("session.created", session=self.wire_session())
        if isinstance(self.config, RealtimeSessionConfig):
            self.mcp.sync(self.config.tools)
        return self._flush()

    def report(self, error: RealtimeError) -> list[Output]:
        """Report an error found outside the core (e.g. by the decoder)."""
        self._error(error)
        return self._flush()

    def on_dtmf(self, key: str, now: float) -> list[Output]:
        """A key pressed on a phone call (RFC 4733): ``input_audio_buffer.dtmf_event_received``."""
        if not self.closed:
            # The SDK's model of this event has no event_id (the cloud sends none).
            self._out.append({"type": "input_audio_buffer.dtmf_event_received", "event": key,
                              "received_at": int(now)})
        return self._flush()

    def handle(self, event: ce.ClientEvent, now: float) -> list[Output]:
        """Apply one client event; returns server events and effects in order."""
        if self.closed:
            return []
        handler = _HANDLERS.get(event.type)
        try:
            if handler is None or (
                event.type == "output_audio_buffer.clear" and not self.plays_audio
            ):
                raise invalid_value(
                    "type",
                    event.type,
                    "output_audio_buffer.clear is only available on WebRTC and SIP calls",
                )
            handler(self, event, now)
        except RealtimeError as error:
            self._error(error, event.event_id)
        return self._flush()

    def tick(self, now: float) -> list[Output]:
        """Advance time: session expiry and ``idle_timeout_ms``."""
        if self.closed:
            return []
        if now >= self.expires_at:
            minutes = round(self.limits.session_lifetime_s / 60)
            self._error(
                RealtimeError(
                    f"Your session hit the maximum duration of {minutes} minutes.",
                    "session_expired",
                )
            )
            self._cancel_all("client_cancelled")
            self.closed = True
            self._effect(fx.Close(1000, "session_expired"))
        elif self._idle_deadline is not None and now >= self._idle_deadline:
            self._idle_deadline = None
            self._idle_timeout(now)
        return self._flush()

    def shut_down(self, message: str) -> list[Output]:
        """The server is going away (the end of a drain, server/drain.py): each open
        response ends with ``response.done`` status ``failed`` (``server_error``,
        ``server_shutting_down``), then an ``error`` event says why, then close 1012
        (Service Restart: the SDK may reconnect, and a load balancer sends it elsewhere)."""
        if self.closed:
            return []
        for response_id in list(self._responses):
            self._effect(fx.CancelResponse(response_id))
            self._end(self._responses[response_id], "failed", {"type": "failed", "error": {
                "type": "server_error", "code": SHUTTING_DOWN, "message": message}})
        self._error(RealtimeError(message, SHUTTING_DOWN, type="server_error"))
        self.closed = True
        self._effect(fx.Close(1012, f"server_error.{SHUTTING_DOWN}"))
        return self._flush()

    def next_deadline(self) -> float:
        """The next time :meth:`tick` has something to do."""
        deadline = float(self.expires_at)
        if self._idle_deadline is not None:
            deadline = min(deadline, self._idle_deadline)
        return deadline

    # ------------------------------------------------------------------ session.update

    def _on_session_update(self, event: ce.SessionUpdate, now: float) -> None:
        config = apply_update(self.config, event.session, voice_locked=self._voice_locked)
        if isinstance(config, RealtimeSessionConfig):
            check_mcp_tools(config.tools, "session.tools")
            self._check_unsupported(config)
        self.config = config
        self.buffer.set_format(self.config.audio.input.format.type)
        self._configure_turn_detection()
        self._emit("session.updated", session=self.wire_session())
        if isinstance(config, RealtimeSessionConfig):
            self.mcp.sync(config.tools)

    def _check_unsupported(self, config: RealtimeSessionConfig) -> None:
        """Refuse fields this server cannot honour (docs/fields.md): a saved prompt (there is
        no prompt store), a custom voice the profile's TTS does not have."""
        if config.prompt is not None:
            raise RealtimeError(
                f"Invalid value: '{echo(config.prompt.id)}'. Saved prompts are not available on "
                "this server (it has no prompt store); send the prompt's text as 'instructions'.",
                "invalid_value", "session.prompt.id")
        voice = config.audio.output.voice
        if not isinstance(voice, str) and voice != self.config.audio.output.voice and (  # type: ignore[union-attr]
            voice.id not in self.custom_voices
        ):
            known = ", ".join(sorted(self.custom_voices)) or "none"
            raise RealtimeError(
                f"Invalid value: '{echo(voice.id)}'. Custom voice ids name voices configured on this "
                f"server (here: {known}); use a built-in voice name instead.",
                "invalid_value", "session.audio.output.voice.id")

    # ------------------------------------------------------------------ input audio

    def _on_append(self, event: ce.InputAudioAppend, now: float) -> None:
        if len(event.audio) % 2 and self.buffer.format == "audio/pcm":
            raise RealtimeError(
                f"Invalid 'audio': audio/pcm is 16-bit samples, so an append carries an even "
                f"number of bytes; this one decodes to {len(event.audio)}.", "invalid_value",
                "audio")
        self.buffer.append(event.audio)

    def _on_commit(self, event: ce.InputAudioCommit, now: float) -> None:
        if self.buffer.duration_ms < self.limits.min_commit_ms:
            raise RealtimeError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{self.limits.min_commit_ms:.0f}ms of audio, but buffer only has "
                f"{self.buffer.duration_ms:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        if self.detector is not None:
            self.detector.reset()
        item_id = self._speech_item_id or self.ids.item()
        self._speech_item_id = None
        self._commit_audio(item_id, self.buffer.take_all())

    def _on_clear(self, event: ce.InputAudioClear, now: float) -> None:
        self.buffer.clear()
        if self.detector is not None:
            self.detector.reset()
        self._speech_item_id = None
        self._emit("input_audio_buffer.cleared")

    def _commit_audio(self, item_id: str, audio: bytes) -> None:
        item = StoredItem(
            wire={
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
            audio={0: audio},
            audio_format=self.buffer.format,
        )
        previous = self.conversation.insert(item)
        self._emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        shown = item_wire_without_audio(item.wire)
        self._emit("conversation.item.added", previous_item_id=previous, item=shown)
        self._emit("conversation.item.done", previous_item_id=previous, item=shown)
        transcription = self.config.audio.input.transcription
        if transcription is not None or self.is_transcription:
            options = transcription.model_dump(exclude_none=True) if transcription else {}
            if self._include_logprobs:
                options["logprobs"] = True
            self._effect(fx.StartTranscription(item_id, audio, self.buffer.format, options))

    def on_vad(
        self, frame_start_ms: float, frame_ms: float, probabilities: Sequence[float], now: float
    ) -> list[Output]:
        """Feed VAD results for consecutive frames starting at ``frame_start_ms``."""
        if self.detector is None or self.closed:
            return []
        start = frame_start_ms
        for probability in probabilities:
            transition = self.detector.feed(
                float(probability), start, start + frame_ms, self.buffer.start_ms
            )
            start += frame_ms
            if isinstance(transition, SpeechStarted):
                self._speech_started(transition)
            elif isinstance(transition, SpeechStopped):
                self._speech_stopped(transition)
            elif isinstance(transition, TurnQuery):
                self._ask_turn_end(transition)
        return self._flush()

    def on_turn_end(self, query_id: int, probability: float, now: float) -> list[Output]:
        """The turn-end model's verdict on query ``query_id``: P(the turn is complete).

        Ends the turn (``speech_stopped``, commit, response) when the query still stands
        and the probability reaches the eagerness's threshold; a verdict on a pause the
        user has since spoken through is ignored.
        """
        if self.detector is None or self.closed:
            return []
        transition = self.detector.verdict(query_id, probability)
        if transition is not None:
            self._speech_stopped(transition)
        return self._flush()

    def _ask_turn_end(self, q: TurnQuery) -> None:
        start = max(float(q.audio_start_ms), q.audio_end_ms - TURN_MODEL_WINDOW_MS, self.buffer.start_ms)
        audio = self.buffer.peek(start, q.audio_end_ms)
        self._effect(fx.PredictTurnEnd(q.query_id, audio, self.buffer.format))

    def _speech_started(self, t: SpeechStarted) -> None:
        self._idle_deadline = None
        self._speech_item_id = self.ids.item()
        self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=t.audio_start_ms,
            item_id=self._speech_item_id,
        )
        self._effect(fx.UtteranceStarted(self._speech_item_id, float(t.audio_start_ms)))
        td = self.config.audio.input.turn_detection
        if td is None or not td.interrupt_response:
            return
        if self._default_response:
            self._cancel(self._default_response, "turn_detected")
        if self.playback is not None and self.playback.head_ended():
            # A finished response's audio still plays: the user speaks over it.
            self._clear_playback(self.playback.head)

    def _speech_stopped(self, t: SpeechStopped) -> None:
        item_id = self._speech_item_id or self.ids.item()
        self._speech_item_id = None
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=t.audio_end_ms, item_id=item_id)
        if self.detector is not None:
            self._effect(fx.UtteranceStopped(item_id, self.detector.last_speech_end_ms))
        start = self.buffer.start_ms
        audio = self.buffer.take_range(start, t.audio_end_ms)
        self._commit_audio(item_id, audio)
        td = self.config.audio.input.turn_detection
        if (
            td is not None
            and td.create_response
            and not self.is_transcription
            and self._default_response is None
        ):
            self._create_response(None, None)

    def _idle_timeout(self, now: float) -> None:
        if self.detector is not None and self.detector.state is VadState.SPEAKING:
            return
        item_id = self.ids.item()
        end = int(self.buffer.end_ms)
        self._emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=int(self.buffer.start_ms),
            audio_end_ms=end,
            item_id=item_id,
        )
        self._commit_audio(item_id, self.buffer.take_all())
        if self._default_response is None:
            self._create_response(None, None)

    # ------------------------------------------------------------------ conversation items

    def _on_item_create(self, event: ce.ItemCreate, now: float) -> None:
        item = self._stored_from_client(event.item.model_dump(exclude_none=True))
        if event.previous_item_id is not None and event.previous_item_id != "root" and (
            event.previous_item_id not in self.conversation
        ):
            raise not_found(event.previous_item_id, "previous_item_id")
        previous = self.conversation.insert(item, event.previous_item_id)
        shown = item_wire_without_audio(item.wire)
        self._emit("conversation.item.added", previous_item_id=previous, item=shown)
        self._emit("conversation.item.done", previous_item_id=previous, item=shown)

    def _stored_from_client(self, raw: dict[str, Any]) -> StoredItem:
        """Validate role/content rules and build the stored item (audio decoded)."""
        wire: dict[str, Any] = {"id": raw.get("id") or self.ids.item(), "object": "realtime.item"}
        audio: dict[int, bytes | bytearray] = {}
        kind = raw["type"]
        wire["type"] = kind
        wire["status"] = "completed"
        if kind == "message":
            role = raw["role"]
            wire["role"] = role
            content = []
            for index, part in enumerate(raw["content"]):
                if part["type"] not in ALLOWED_CONTENT[role]:
                    raise RealtimeError(
                        f"Invalid value: '{part['type']}'. Content of a {role} message must be "
                        f"one of: {', '.join(ALLOWED_CONTENT[role])}.",
                        "invalid_value",
                        f"item.content[{index}].type",
                    )
                part = dict(part)
                if part["type"] == "input_audio":
                    data = part.pop("audio", None)
                    if data:
                        audio[index] = _b64(data, f"item.content[{index}].audio")
                    part.setdefault("transcript", None)
                if part["type"] == "input_image" and not part.get("image_url"):
                    raise RealtimeError(
                        f"Missing required parameter: 'item.content[{index}].image_url'.",
                        "missing_required_parameter",
                        f"item.content[{index}].image_url",
                    )
                if part["type"] == "input_image":
                    check_image(part["image_url"], f"item.content[{index}].image_url",
                                accepts_images=self.accepts_images, max_bytes=self.limits.max_image_bytes)
                content.append(part)
            wire["content"] = content
        elif kind == "function_call":
            wire.update(
                name=raw["name"], call_id=raw.get("call_id") or self.ids.call(),
                arguments=raw["arguments"],
            )
        elif kind == "mcp_approval_response":
            request_id = raw["approval_request_id"]
            if request_id not in self.conversation or (
                self.conversation.get(request_id).wire.get("type") != "mcp_approval_request"
            ):
                raise RealtimeError(
                    f"Invalid value: '{echo(request_id)}'. approval_request_id must name an "
                    "mcp_approval_request item of the conversation.", "invalid_value",
                    "item.approval_request_id")
            wire = {"id": wire["id"], "type": kind, "approval_request_id": request_id,
                    "approve": raw["approve"]}
            if raw.get("reason") is not None:
                wire["reason"] = raw["reason"]
        else:
            wire.update(call_id=raw["call_id"], output=raw["output"])
        return StoredItem(wire=wire, audio=audio, audio_format=self.buffer.format)

    def _on_item_retrieve(self, event: ce.ItemRetrieve, now: float) -> None:
        self._emit("conversation.item.retrieved", item=self.conversation.retrieve_wire(event.item_id))

    def _on_item_delete(self, event: ce.ItemDelete, now: float) -> None:
        self.conversation.delete(event.item_id)
        self._emit("conversation.item.deleted", item_id=event.item_id)

    def _on_item_truncate(self, event: ce.ItemTruncate, now: float) -> None:
        self._truncate(event.item_id, event.content_index, event.audio_end_ms)

    def _truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """Cut an assistant audio part to ``audio_end_ms`` (its unheard transcript dropped)
        and emit ``conversation.item.truncated``; raises :class:`RealtimeError` when the
        item or its audio is not there."""
        item = self.conversation.get(item_id)
        wire = item.wire
        content = wire.get("content") or []
        if wire.get("role") != "assistant" or content_index >= len(content) or (
            content[content_index].get("type") != "output_audio"
        ):
            raise RealtimeError(
                "Only assistant messages with audio content can be truncated; "
                f"item '{echo(item_id)}' has no audio at content_index {content_index}.",
                "invalid_value",
                "content_index",
            )
        audio = item.audio.get(content_index, b"")
        per_ms = bytes_per_ms(item.audio_format)  # type: ignore[arg-type]
        length_ms = len(audio) / per_ms
        if audio_end_ms > length_ms + 0.5:
            raise RealtimeError(
                f"Audio content of {length_ms:.0f}ms is shorter than {audio_end_ms}ms.",
                "invalid_value",
                "audio_end_ms",
            )
        sample = 2 if item.audio_format == "audio/pcm" else 1
        keep = int(audio_end_ms * per_ms)
        keep -= keep % sample
        self.conversation.replace_audio(item, content_index, bytes(audio[:keep]))
        part = content[content_index]
        chars = 0
        for end_ms, text_len in item.alignment.get(content_index, []):
            if end_ms <= audio_end_ms + 0.5:
                chars = text_len
        transcript = part.get("transcript") or ""
        if audio_end_ms < length_ms - 0.5:
            part["transcript"] = transcript[:chars]
        self._emit(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    # ------------------------------------------------------------------ responses

    def _on_response_create(self, event: ce.ResponseCreate, now: float) -> None:
        if self.is_transcription:
            raise RealtimeError(
                "Responses are not available in transcription sessions.",
                "invalid_value",
                "type",
            )
        params = event.response
        if params is not None and params.prompt is not None:
            raise RealtimeError(
                f"Invalid value: '{echo(params.prompt.id)}'. Saved prompts are not available on this "
                "server (it has no prompt store); send the prompt's text as 'instructions'.",
                "invalid_value", "response.prompt.id")
        out_of_band = params is not None and params.conversation not in (None, "auto")
        if params is not None and params.conversation not in (None, "auto", "none"):
            raise invalid_value("response.conversation", params.conversation, "'auto', 'none'")
        if not out_of_band and self._default_response is not None:
            raise RealtimeError(
                "Conversation already has an active response in progress: "
                f"{self._default_response}. Wait until the response is finished before "
                "creating a new one.",
                "conversation_already_has_active_response",
            )
        if out_of_band and len(self._responses) - (self._default_response is not None) >= (
            self.limits.max_out_of_band_responses
        ):
            raise RealtimeError(
                f"At most {self.limits.max_out_of_band_responses} out-of-band responses may "
                "run at once.",
                "too_many_active_responses",
            )
        self._create_response(params, event.event_id)

    def _context_items(self, params: Any, *, with_audio: bool = True) -> list[fx.ContextItem]:
        def ctx(item: StoredItem) -> fx.ContextItem:
            audio = next(iter(item.audio.values()), None) if item.audio and with_audio else None
            return fx.ContextItem(
                wire=item.wire,
                audio=bytes(audio) if audio is not None else None,
                audio_format=item.audio_format,
            )

        if params is None or params.input is None:
            return [ctx(item) for item in self.conversation.items()]
        items = []
        for index, raw in enumerate(params.input):
            if raw.type == "item_reference":
                if raw.id not in self.conversation:
                    raise not_found(raw.id, f"response.input[{index}].id")
                items.append(ctx(self.conversation.get(raw.id)))
            else:
                items.append(ctx(self._stored_from_client(raw.model_dump(exclude_none=True))))
        return items

    def _plan(self, params: Any, response_id: str, *, with_audio: bool = True) -> fx.ResponsePlan:
        """The response plan for ``response.create`` ``params`` (``None``: the session's
        defaults); raises :class:`RealtimeError` for an invalid combination. Without
        ``with_audio`` the items carry no audio (nothing is copied)."""
        assert isinstance(self.config, RealtimeSessionConfig)
        cfg = self.config
        out_of_band = params is not None and params.conversation == "none"
        audio_out = params.audio.output if params and params.audio and params.audio.output else None
        voice = (audio_out.voice if audio_out and audio_out.voice else None) or cfg.audio.output.voice
        voice_name = voice if isinstance(voice, str) else voice.id
        fmt = (audio_out.format if audio_out and audio_out.format else None) or cfg.audio.output.format
        max_tokens = params.max_output_tokens if params and params.max_output_tokens else None
        max_tokens = max_tokens or cfg.max_output_tokens
        tools = params.tools if params and params.tools is not None else cfg.tools
        reasoning = params.reasoning if params and params.reasoning is not None else cfg.reasoning
        plan = fx.ResponsePlan(
            response_id=response_id,
            instructions=params.instructions
            if params and params.instructions is not None
            else cfg.instructions,
            items=self._context_items(params, with_audio=with_audio),
            output_modalities=list(params.output_modalities)
            if params and params.output_modalities
            else list(cfg.output_modalities),
            voice=voice_name,
            speed=cfg.audio.output.speed,
            output_format=fmt.model_dump(),
            tools=[t.model_dump(exclude_none=True) for t in tools],
            tool_choice=_dump(params.tool_choice)
            if params and params.tool_choice is not None
            else _dump(cfg.tool_choice),
            max_output_tokens=None if max_tokens == "inf" else int(max_tokens),
            conversation=not out_of_band,
            metadata=params.metadata if params else None,
            mcp_tools=self.mcp.offered(
                tools, "response.tools" if params and params.tools is not None else "session.tools"),
            reasoning_effort=reasoning.effort if reasoning is not None else None,
        )
        if params is not None and (params.tool_choice is not None or params.tools is not None):
            # The session's own pair was checked by session.update.
            check_tool_choice(params.tool_choice if params.tool_choice is not None
                              else cfg.tool_choice, tools, "response.tool_choice")
        if "audio" in plan.output_modalities and "text" in plan.output_modalities:
            raise RealtimeError(
                "Invalid value: ['text', 'audio']. output_modalities must be ['audio'] or ['text'].",
                "invalid_value",
                "response.output_modalities",
            )
        return plan

    @property
    def uses_speech_text(self) -> bool:
        """Whether the text of the user's speech will be used: input transcription is
        configured, or turn detection creates responses (which read the transcript).

        A session that only listens for turns (``create_response: false`` and no
        transcription) needs no transcription while the user speaks.
        """
        if self.config.audio.input.transcription is not None:
            return True
        td = self.config.audio.input.turn_detection
        return isinstance(self.config, RealtimeSessionConfig) and td is not None and td.create_response

    @property
    def engaged(self) -> bool:
        """Whether the session has done anything yet: appended audio or added an item.

        A session that has just connected still has the default configuration, which
        answers; whether it will only listen shows once it sends its ``session.update``.
        """
        return self.buffer.end_ms > 0 or len(self.conversation) > 0

    def draft_plan(self, item_id: str) -> fx.ResponsePlan | None:
        """The plan of the response turn detection would create if the user's speech were
        committed now as item ``item_id``, or ``None`` when no response would be created.

        Pure: nothing is emitted and no id is consumed (``response_id`` is ``"draft"``), and
        the items carry no audio (user audio is represented by its transcript, which the
        caller supplies). The pipeline uses it to prepare the LLM (``Pipeline.prefill``)
        while the user speaks; the real plan is built again at the commit.
        """
        td = self.config.audio.input.turn_detection
        if (
            not isinstance(self.config, RealtimeSessionConfig)
            or td is None
            or not td.create_response
            or self._default_response is not None
        ):
            return None
        try:
            plan = self._plan(None, "draft", with_audio=False)
        except RealtimeError:
            return None
        pending = {"type": "message", "role": "user", "id": item_id, "content": [{"type": "input_audio"}]}
        return replace(plan, items=[*plan.items, fx.ContextItem(wire=pending)])

    def _create_response(self, params: Any, event_id: str | None) -> None:
        assert isinstance(self.config, RealtimeSessionConfig)
        out_of_band = params is not None and params.conversation == "none"
        plan = self._plan(params, self.ids.response())
        response = ActiveResponse(
            id=plan.response_id,
            plan=plan,
            conversation_id=None if out_of_band else self.conversation.id,
        )
        response.base_items = plan.items
        emitter = ResponseEmitter(response, self.conversation, self.ids, self._emit,
                                  self._play if self.playback is not None else None)
        self._responses[response.id] = emitter
        if not out_of_band:
            self._default_response = response.id
        self._idle_deadline = None
        self._emit("response.created", response=emitter.response_wire())
        approved = [r for r, ok in self.mcp.approvals() if ok] if not out_of_band else []
        calls = [(emitter.run_approved(request), request) for request in approved]
        if calls:  # approved MCP calls run first; the model then continues with their results
            self._call_mcp(emitter, [item for item, _ in calls])
        else:
            self._effect(fx.StartResponse(plan))

    def _on_response_cancel(self, event: ce.ResponseCancel, now: float) -> None:
        target = event.response_id or self._default_response
        if target is None or target not in self._responses:
            raise RealtimeError(
                "Cancellation failed: no active response found", "response_cancel_not_active"
            )
        self._cancel(target, "client_cancelled")

    def _on_output_audio_clear(self, event: ce.OutputAudioClear, now: float) -> None:
        self._clear_playback(self._default_response)

    def _cancel(self, response_id: str, reason: str) -> None:
        emitter = self._responses.get(response_id)
        if emitter is None:
            return
        if self.playback is not None and reason == "turn_detected":
            self._clear_playback(response_id)
        self._effect(fx.CancelResponse(response_id))
        self._end(emitter, "cancelled", {"type": "cancelled", "reason": reason})

    # ------------------------------------------------------------------ playback (calls)

    def _play(self, response_id: str, item_id: str, content_index: int, audio: bytes) -> None:
        """Hand one chunk of response audio (in the response's output format) to the player."""
        assert self.playback is not None
        fmt = self._responses[response_id].r.plan.output_format["type"]
        pcm = decode_to_pcm16(audio, fmt)
        rate = format_rate(fmt)
        wire_ms = len(pcm) / (2 * rate) * 1000
        if rate != self.playback.sample_rate:
            pcm = resample_pcm16(pcm, rate, self.playback.sample_rate)
        self.playback.queued(response_id, item_id, content_index, len(pcm), wire_ms)
        self._effect(fx.PlayAudio(response_id, item_id, content_index, pcm, self.playback.sample_rate))

    def _clear_playback(self, response_id: str | None) -> None:
        """Cut playback off now (barge-in, ``output_audio_buffer.clear``): the player drops
        its queue, ``output_audio_buffer.cleared`` goes out, and each part cut is truncated
        to what was played — at once if its response has ended, else when its
        ``response.done`` goes out (so the item is final)."""
        assert self.playback is not None
        cut = self.playback.clear()
        target = response_id or (cut.response_id if cut is not None else None)
        if target is not None:
            self._effect(fx.ClearOutputAudio(target))
        self._emit("output_audio_buffer.cleared", response_id=target or "")
        if cut is None:
            return
        if cut.response_id in self._responses:
            self.playback.keep_cut(cut)
        else:
            self._truncate_cut(cut)

    def _truncate_cut(self, cut: Cut) -> None:
        for item_id, content_index, end_ms in cut.played:
            # The item may be gone (deleted) or never stored (out of band): nothing to truncate.
            with contextlib.suppress(RealtimeError):
                self._truncate(item_id, content_index, end_ms)

    def on_playback_started(self, response_id: str) -> list[Output]:
        """The player started playing ``response_id``'s audio."""
        if not self.closed:
            self._emit("output_audio_buffer.started", response_id=response_id)
        return self._flush()

    def on_audio_played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        """The player played ``nbytes`` more PCM16 of one part (:class:`~.effects.PlayAudio`).
        Emits nothing: it is the account a later cut-off is decided from."""
        if self.playback is not None:
            self.playback.played(response_id, item_id, content_index, nbytes)

    def on_playback_stopped(self, response_id: str) -> list[Output]:
        """The player played the last audio of ``response_id`` (after
        :class:`~.effects.FinishPlayback`)."""
        if self.playback is not None:
            self.playback.stopped(response_id)
        if not self.closed:
            self._emit("output_audio_buffer.stopped", response_id=response_id)
        return self._flush()

    def _cancel_all(self, reason: str) -> None:
        for response_id in list(self._responses):
            self._cancel(response_id, reason)

    def _end(self, emitter: ResponseEmitter, status: str, details: dict[str, Any] | None) -> None:
        emitter.finish(status, details)
        if self.playback is not None:
            self._end_playback(emitter.r.id, status)
        self._emit("rate_limits.updated", rate_limits=self.rate_limits)
        totals = self.totals
        totals.input_tokens += emitter.r.input_tokens
        totals.output_tokens += emitter.r.output_tokens
        totals.audio_out_ms += sum(o.audio_ms for o in emitter.r.output)
        self._responses.pop(emitter.r.id, None)
        if self._default_response == emitter.r.id:
            self._default_response = None
        if emitter.r.produced_audio:
            self._voice_locked = True

    def _end_playback(self, response_id: str, status: str) -> None:
        """A response ended (its ``response.done`` just went out): the player learns that its
        audio is complete, and a cancelled response cut off earlier is truncated now, right
        after its ``response.done`` (a response that was not cancelled went on playing after
        the clear, so it keeps its audio)."""
        assert self.playback is not None
        cut = self.playback.take_cut(response_id)
        if self.playback.end(response_id):
            self._effect(fx.FinishPlayback(response_id))
        if cut is not None and status == "cancelled":
            self._truncate_cut(cut)

    # ------------------------------------------------------------------ backend results

    def _emitter(self, response_id: str) -> ResponseEmitter | None:
        emitter = self._responses.get(response_id)
        return emitter if emitter is not None and emitter.active else None

    def on_response_text(self, response_id: str, delta: str) -> list[Output]:
        if (emitter := self._emitter(response_id)) is not None:
            emitter.text(delta)
        return self._flush()

    def on_response_audio(self, response_id: str, audio: bytes, transcript: str) -> list[Output]:
        """Audio in the response's output format, with the transcript of that audio."""
        if (emitter := self._emitter(response_id)) is not None:
            emitter.audio(audio, transcript)
            # The voice is fixed from the first audio output, not the response end
            # (docs/protocol.md, Session objects).
            self._voice_locked = self._voice_locked or emitter.r.produced_audio
        return self._flush()

    def on_response_tool_call(
        self, response_id: str, index: int, name: str | None, call_id: str | None, arguments: str
    ) -> list[Output]:
        if (emitter := self._emitter(response_id)) is not None:
            emitter.tool_call(index, name, call_id, arguments)
        return self._flush()

    def on_response_usage(
        self, response_id: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0
    ) -> list[Output]:
        if (emitter := self._emitter(response_id)) is not None:
            emitter.usage(input_tokens, output_tokens, cached_tokens)
        return self._flush()

    def on_response_done(
        self, response_id: str, now: float, *, reason: str = "stop", played_ms: float = 0.0
    ) -> list[Output]:
        """The backend finished; ``reason`` ``length`` means max_output_tokens was hit.

        When the model called MCP tools the response goes on: the calls run (effect
        :class:`~rtgate.core.effects.CallMcpTools`), then the model continues.
        """
        if (emitter := self._emitter(response_id)) is not None:
            if reason != "length" and (calls := emitter.start_mcp_calls()):
                self._call_mcp(emitter, calls)
                return self._flush()
            if reason == "length":
                self._end(emitter, "incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
            else:
                self._end(emitter, "completed", None)
            self._arm_idle_timeout(now, emitter)
        return self._flush()

    def _call_mcp(self, emitter: ResponseEmitter, items: list[Any]) -> None:
        calls = []
        for item in items:
            wire = item.stored.wire
            tool = self.mcp.server(wire["server_label"])
            if tool is None:
                gone = f"MCP server '{wire['server_label']}' is no longer among the session's tools."
                emitter.mcp_result(item.id, None, {"type": "tool_execution_error", "message": gone})
                continue
            calls.append(fx.McpCall(item.id, tool, wire["name"], item.arguments))
        if calls:
            self._effect(fx.CallMcpTools(emitter.r.id, tuple(calls)))
        else:
            self._continue_after_tools(emitter)

    def _continue_after_tools(self, emitter: ResponseEmitter) -> None:
        r = emitter.r
        r.tool_rounds += 1
        # After max_tool_rounds the model must answer in words: no endless tool loops.
        choice = "auto" if r.tool_rounds < self.limits.max_tool_rounds else "none"
        r.plan = replace(r.plan, items=emitter.context_so_far(), tool_choice=choice)
        self._effect(fx.StartResponse(r.plan))

    def on_mcp_tools_listed(self, item_id: str, tools: list[dict[str, Any]]) -> list[Output]:
        """The listing of item ``item_id`` returned ``tools`` (core/mcp.py)."""
        if not self.closed:
            self.mcp.listed(item_id, tools)
        return self._flush()

    def on_mcp_list_failed(self, item_id: str, message: str) -> list[Output]:
        if not self.closed:
            self.mcp.failed(item_id, message)
        return self._flush()

    def on_mcp_call_result(
        self, response_id: str, item_id: str, output: str | None, error: dict[str, Any] | None
    ) -> list[Output]:
        """MCP call ``item_id`` of a response ended with ``output`` or ``error``; after the
        last call of a round the model continues (a late result after a cancel is dropped)."""
        if (emitter := self._emitter(response_id)) is not None:
            emitter.mcp_result(item_id, output, error)
            if not emitter.r.pending:
                self._continue_after_tools(emitter)
        return self._flush()

    def on_response_failed(self, response_id: str, code: str, message: str) -> list[Output]:
        if (emitter := self._emitter(response_id)) is not None:
            self._end(
                emitter,
                "failed",
                {"type": "failed", "error": {"type": "server_error", "code": code, "message": message}},
            )
        return self._flush()

    def _arm_idle_timeout(self, now: float, emitter: ResponseEmitter) -> None:
        td = self.config.audio.input.turn_detection
        idle = getattr(td, "idle_timeout_ms", None)
        if idle is None or not emitter.r.plan.conversation:
            return
        playback_s = sum(o.audio_ms for o in emitter.r.output) / 1000
        self._idle_deadline = now + playback_s + idle / 1000

    def on_transcription_delta(self, item_id: str, delta: str) -> list[Output]:
        """A transcript delta of a committed item, or (live mode) of the reserved input id."""
        live = self.live_transcription and item_id == self._speech_item_id
        if delta and (item_id in self.conversation or live):
            self._emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )
        return self._flush()

    @property
    def _include_logprobs(self) -> bool:
        return "item.input_audio_transcription.logprobs" in (self.config.include or ())

    def on_transcription_completed(
        self, item_id: str, transcript: str, audio_seconds: float,
        logprobs: Sequence[tuple[str, float]] | None = None,
    ) -> list[Output]:
        """The transcript of a committed item; ``logprobs`` (token, log-probability) pairs
        appear on the event when the session's ``include`` asks for them."""
        extra: dict[str, Any] = {}
        if logprobs is not None and self._include_logprobs:
            extra["logprobs"] = [{"token": token, "bytes": list(token.encode()), "logprob": round(lp, 6)}
                                 for token, lp in logprobs]
        if item_id in self.conversation:
            item = self.conversation.get(item_id)
            content = item.wire.get("content") or []
            if content:
                content[0]["transcript"] = transcript
            self._emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(audio_seconds, 3)},
                **extra,
            )
        return self._flush()

    def on_transcription_failed(self, item_id: str, code: str, message: str) -> list[Output]:
        if item_id in self.conversation:
            self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={"type": "server_error", "code": code, "message": message, "param": None},
            )
        return self._flush()

    def close(self) -> list[Output]:
        """The connection went away: cancel every response (effects only, no events)."""
        self.closed = True
        effects: list[Output] = [fx.CancelResponse(rid) for rid in self._responses]
        self._responses.clear()
        self._default_response = None
        self._out.clear()
        return effects


def _dump(value: Any) -> Any:
    return value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value


def _b64(data: str, param: str) -> bytes:
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise RealtimeError(
            f"Invalid '{param}': not valid base64-encoded audio.", "invalid_value", param
        ) from None


_HANDLERS: dict[str, Any] = {
    "session.update": Session._on_session_update,
    "input_audio_buffer.append": Session._on_append,
    "input_audio_buffer.commit": Session._on_commit,
    "input_audio_buffer.clear": Session._on_clear,
    "conversation.item.create": Session._on_item_create,
    "conversation.item.retrieve": Session._on_item_retrieve,
    "conversation.item.delete": Session._on_item_delete,
    "conversation.item.truncate": Session._on_item_truncate,
    "response.create": Session._on_response_create,
    "response.cancel": Session._on_response_cancel,
    "output_audio_buffer.clear": Session._on_output_audio_clear,
}

__all__ = ["Output", "Session"]
