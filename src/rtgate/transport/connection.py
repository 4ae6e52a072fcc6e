"""Runs one session over a message channel: the I/O edge around the session core.

:class:`SessionRunner` owns every task of one session — the outbound writer, the timer,
the VAD feed, response and transcription tasks — and ends them all when the session
ends; nothing is fire-and-forget. The channel (a WebSocket today, a WebRTC data channel
later) is abstracted as :class:`Channel`. Outbound events go through a bounded queue;
a client that stops reading is closed with 1008 once the queue is full or a send passes
its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from .. import extras, tracing
from ..audio import Resampler, decode_to_pcm16, encode_from_pcm16, format_rate
from ..core import effects as fx
from ..core.effects import ContextItem
from ..core.session import Output, Session
from ..mcp.limits import McpLimits
from ..pipeline.base import WIRE_SAMPLE_RATE, BackendError, TranscriptionOptions
from ..pipeline.responder import AudioOut, DoneOut, Pipeline, TextOut, ToolCallOut, UsageOut
from ..protocol.client_events import DecodeLimits, InputAudioAppend, decode_client_event
from ..protocol.errors import RealtimeError
from .incremental_stt import IncrementalTranscriber
from .vad import VadFeed, VadService

log = logging.getLogger("rtgate.session")

Clock = Callable[[], float]


class Channel(Protocol):
    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


OutputHook = Callable[[Output], "list[Output]"]
"""Sees each output of the core before the runner sends or runs it; see :meth:`SessionRunner.apply`."""


STOP_TIMEOUT_S = 5.0
"""Default bound on :meth:`SessionRunner.stop` (the server passes ``session_stop_timeout_s``)."""


class ClientGone(Exception):
    """The client closed the connection or stopped reading."""


class SessionRunner:
    """Drives one :class:`Session` with real backends; see the module docstring."""

    def __init__(
        self,
        session: Session,
        channel: Channel,
        pipeline: Pipeline,
        *,
        vad: VadService | None,
        decode_limits: DecodeLimits,
        queue_events: int,
        send_deadline_s: float,
        clock: Clock = time.time,
        observer: Callable[[dict[str, Any]], None] | None = None,
        output_hook: OutputHook | None = None,
        mcp: McpLimits | None = None,
    ) -> None:
        self.session = session
        self.channel = channel
        self.pipeline = pipeline
        self._vad_service = vad
        self._vad: VadFeed | None = None
        self._decode_limits = decode_limits
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(queue_events)
        self._send_deadline_s = send_deadline_s
        self._clock = clock
        self._observer = observer
        self._output_hook = output_hook
        self._mcp = mcp or McpLimits()
        session.accepts_images = pipeline.accepts_images
        session.custom_voices = pipeline.custom_voices
        self._trace = tracing.tracer_for(session.id)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wake_timer = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._done = asyncio.Event()
        self._stt = IncrementalTranscriber(
            session, pipeline, spawn=self._spawn, apply=self.apply, enabled=pipeline.incremental_stt
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._spawn(self._writer(), "writer")
        self._spawn(self._timer(), "timer")
        if self._vad_service is not None and self._vad_service.turn_end is not None:
            self.session.enable_turn_model()
        self.apply(self.session.start())
        self._sync_vad()
        self._stt.start()

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> set[asyncio.Task[None]]:
        """End the session: cancel every task it owns and wait for them, ``timeout_s``
        seconds at most whatever they do.

        Returns the tasks still running then — code that swallowed its cancellation or
        waits on something that cannot end — after cancelling them once more; the runner
        forgets them, and the caller decides what their end releases (server/slots.py).
        """
        items = self.session.conversation.items()
        if items:  # the key of its responses' LLM requests (pipeline/context.py)
            self.pipeline.forget_conversation(items[0].id)
        self.apply(self.session.close())
        if self._trace is not None:
            self._trace.close()
        if self._vad is not None:
            feed, self._vad = self._vad, None
            await feed.aclose()
        tasks = set(self._tasks.values()) | self._background
        self._tasks.clear()
        self._background.clear()
        for task in tasks:
            task.cancel()
        if not tasks:
            return set()
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in done:  # retrieved, so that none is reported as never retrieved
            if not task.cancelled():
                task.exception()
        for task in pending:
            task.cancel()
        if pending:
            log.warning("session %s: %d task(s) still running %.1f s after the session ended: %s",
                        self.session.id, len(pending), timeout_s,
                        ", ".join(sorted(t.get_name() for t in pending)))
        return pending

    @property
    def closing(self) -> tuple[int, str] | None:
        return self._closing

    async def wait_closed(self) -> None:
        await self._done.wait()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"{self.session.id}:{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has been sent (the writer does the close)."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        if self._outbox.full():
            # The client is not reading: close without flushing.
            self._spawn(self._close_now(), "close")

    def shut_down(self, message: str) -> None:
        """End the session for the server's shutdown (:meth:`Session.shut_down`): open
        responses get ``response.done`` (failed), an ``error`` says why, then close 1012."""
        self.apply(self.session.shut_down(message))

    async def _close_now(self) -> None:
        code, reason = self._closing or (1000, "")
        with contextlib.suppress(Exception):
            await self.channel.close(code, reason)
        self._done.set()

    # ------------------------------------------------------------------ inbound

    async def receive_text(self, frame: str | bytes) -> None:
        """Handle one client frame (:meth:`handle_text` for callers that cannot await)."""
        self.handle_text(frame)

    def handle_text(self, frame: str | bytes) -> None:
        """Handle one client frame. Never blocks or awaits: whatever takes time (sends,
        responses, transcription) is queued or spawned, so a transport may call it straight
        from its ``data_received`` (server/ws_protocol.py, ``MessageTap``)."""
        event = decode_client_event(frame, self._decode_limits)
        if isinstance(event, RealtimeError):
            self.apply(self.session.report(event))
            return
        if isinstance(event, InputAudioAppend):
            self._append(event)
            return
        self.apply(self.session.handle(event, self._clock()))
        self._sync_vad()
        self._wake_timer.set()

    def feed_audio(self, audio: bytes) -> None:
        """Append input audio that arrived outside client events (a WebRTC media track).

        ``audio`` is in the session's input format; it goes through the core exactly as an
        ``input_audio_buffer.append`` would, then to the VAD.
        """
        self._append(InputAudioAppend(audio=audio))

    def _append(self, event: InputAudioAppend) -> None:
        outputs = self.session.handle(event, self._clock())
        if outputs:  # an accepted append emits nothing: the common case skips the scan
            self.apply(outputs)
            if any(isinstance(o, dict) and o["type"] == "error" for o in outputs):
                return
        self._feed_vad(event.audio)

    def receive_binary(self) -> None:
        self.apply(
            self.session.report(
                RealtimeError(
                    "Expected a text WebSocket message; binary frames are not supported.",
                    "invalid_event",
                )
            )
        )

    # ------------------------------------------------------------------ VAD

    def _sync_vad(self) -> None:
        """Start, restart or stop the VAD feed to match the session's turn detection."""
        fmt = self.session.buffer.format
        if not self.session.vad_enabled or self._vad_service is None:
            if self._vad is not None:
                feed, self._vad = self._vad, None
                self._spawn(feed.aclose(), "vad-close")
            return
        if self._vad is None or self._vad.audio_format != fmt:
            if self._vad is not None:
                old = self._vad
                self._spawn(old.aclose(), "vad-close")
            self._vad = self._vad_service.feed(
                audio_format=fmt,
                origin_ms=self.session.buffer.end_ms,
                on_result=self._on_vad,
            )

    def _feed_vad(self, audio: bytes) -> None:
        if self._vad is None:
            self._sync_vad()
            if self._vad is None:
                return
        pcm = decode_to_pcm16(audio, self._vad.audio_format)  # type: ignore[arg-type]
        if not self._vad.feed(pcm):
            log.warning("session %s: VAD is falling behind; audio dropped from VAD", self.session.id)

    def _on_vad(self, frame_start_ms: float, frame_ms: float, probabilities: Any) -> None:
        outputs = self.session.on_vad(frame_start_ms, frame_ms, probabilities, self._clock())
        if outputs:
            self.apply(outputs)
            # The timer's deadline only moves when the core changed state (it emitted).
            self._wake_timer.set()
        self._stt.wake()

    # ------------------------------------------------------------------ outputs and effects

    def apply(self, outputs: list[Output]) -> None:
        """Send the core's events and run its effects, in order.

        An ``output_hook`` sees each output first and returns what happens in its place:
        ``[out]`` to go on as usual, ``[]`` when it handled the output itself (a WebRTC
        call plays audio deltas instead of sending them), or more outputs around it. What
        the hook returns does not pass through it again.
        """
        for out in outputs:
            for final in self._output_hook(out) if self._output_hook is not None else (out,):
                if isinstance(final, dict):
                    self._send(final)
                else:
                    self._run_effect(final)

    def _send(self, event: dict[str, Any]) -> None:
        if self._closing is not None:
            return
        if self._observer is not None:
            self._observer(event)
        if self._trace is not None:
            self._trace.on_event(event, getattr(self.session.config, "tracing", None))
        try:
            self._outbox.put_nowait(orjson.dumps(event).decode())
        except asyncio.QueueFull:
            log.warning("session %s: client is not reading; closing (1008)", self.session.id)
            self.close(1008, "client is not reading events fast enough")

    def _run_effect(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.StartResponse):
            rid = effect.plan.response_id
            self._tasks[rid] = self._spawn(self._respond(effect.plan), f"response:{rid}")
        elif isinstance(effect, fx.CancelResponse):
            task = self._tasks.pop(effect.response_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(effect, fx.StartTranscription):
            self._spawn(self._transcribe(effect), f"transcribe:{effect.item_id}")
        elif isinstance(effect, fx.Close):
            self.close(effect.code, effect.reason)
        elif isinstance(effect, fx.UtteranceStarted):
            self._stt.utterance_started(effect)
        elif isinstance(effect, fx.UtteranceStopped):
            self._stt.utterance_stopped(effect)
        elif isinstance(effect, fx.PredictTurnEnd):
            self._spawn(self._predict_turn_end(effect), f"turn-end:{effect.query_id}")
        elif isinstance(effect, fx.ListMcpTools):
            self._spawn(self._list_mcp(effect), f"mcp-list:{effect.item_id}")
        elif isinstance(effect, fx.CallMcpTools):
            rid = effect.response_id
            self._tasks[rid] = self._spawn(self._call_mcp(effect), f"mcp-call:{rid}")

    async def _writer(self) -> None:
        try:
            while True:
                frame = await self._outbox.get()
                if frame is None:
                    break
                async with asyncio.timeout(self._send_deadline_s):
                    await self.channel.send_text(frame)
        except TimeoutError:
            log.warning("session %s: send blocked past %.1f s; closing (1008)", self.session.id,
                        self._send_deadline_s)
            self._closing = (1008, "client is not reading events fast enough")
        except Exception:  # the socket went away under us
            self._closing = self._closing or (1006, "")
            self._done.set()
            return
        await self._close_now()

    async def _timer(self) -> None:
        while True:
            delay = max(0.0, self.session.next_deadline() - self._clock())
            self._wake_timer.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, 3600.0)):
                    await self._wake_timer.wait()
            self.apply(self.session.tick(self._clock()))

    async def _predict_turn_end(self, effect: fx.PredictTurnEnd) -> None:
        """Run the turn-end model; its verdict goes back to the core. A failure leaves the
        turn to the silence window (the longest wait)."""
        batcher = self._vad_service.turn_end if self._vad_service is not None else None
        if batcher is None:
            return
        fmt = effect.audio_format
        try:
            pcm = decode_to_pcm16(effect.audio, fmt)  # type: ignore[arg-type]
            probability = await batcher.predict(pcm, format_rate(fmt))  # type: ignore[arg-type]
        except BackendError as exc:
            log.warning("session %s: turn-end model: %s", self.session.id, exc.message)
            return
        self.apply(self.session.on_turn_end(effect.query_id, probability, self._clock()))
        self._wake_timer.set()

    # ------------------------------------------------------------------ MCP tools

    async def _list_mcp(self, effect: fx.ListMcpTools) -> None:
        try:  # the server runs without the mcp extra: the listing fails, the session goes on
            extras.require("mcp", "This server's MCP client")
        except extras.MissingExtra as exc:
            self.apply(self.session.on_mcp_list_failed(effect.item_id, str(exc)))
            return
        from ..mcp.client import McpFailure, McpServer, list_tools

        server = McpServer.from_tool(effect.tool)
        try:
            tools = await list_tools(server, self._mcp)
        except McpFailure as exc:
            log.warning("session %s: MCP server %r: listing failed (%s)", self.session.id,
                        server.label, exc.error["type"])
            self.apply(self.session.on_mcp_list_failed(effect.item_id, exc.message))
            return
        self.apply(self.session.on_mcp_tools_listed(effect.item_id, tools))

    async def _call_mcp(self, effect: fx.CallMcpTools) -> None:
        """Run a round of MCP calls; cancelled with the response (``response.cancel``,
        barge-in), which cancels the call in flight."""
        from ..mcp.client import McpFailure, McpServer, call_tool  # listed, so installed

        rid = effect.response_id
        try:
            for call in effect.calls:
                server = McpServer.from_tool(call.tool)
                try:
                    output = await call_tool(server, call.name, call.arguments, self._mcp)
                except McpFailure as exc:
                    log.info("session %s: MCP call %s on %r failed (%s)", self.session.id, call.name,
                             server.label, exc.error["type"])
                    self.apply(self.session.on_mcp_call_result(rid, call.item_id, None, exc.error))
                else:
                    self.apply(self.session.on_mcp_call_result(rid, call.item_id, output, None))
        finally:
            # The last result may already have started the model again under this id.
            if self._tasks.get(rid) is asyncio.current_task():
                del self._tasks[rid]

    # ------------------------------------------------------------------ backends

    async def _respond(self, plan: fx.ResponsePlan) -> None:
        rid = plan.response_id
        fmt = plan.output_format["type"]
        resampler = None if fmt == "audio/pcm" else Resampler(WIRE_SAMPLE_RATE, format_rate(fmt))
        reason = "stop"
        try:
            turn = self._trace
            first_token = (lambda: turn.llm_first_token(rid)) if turn is not None else None
            async for out in self.pipeline.respond(plan, self._transcript_of, first_token=first_token):
                if isinstance(out, TextOut):
                    self.apply(self.session.on_response_text(rid, out.text))
                elif isinstance(out, AudioOut):
                    pcm = resampler.process_pcm16(out.pcm) if resampler else out.pcm
                    wire = encode_from_pcm16(pcm, fmt)
                    self.apply(self.session.on_response_audio(rid, wire, out.transcript))
                elif isinstance(out, ToolCallOut):
                    self.apply(
                        self.session.on_response_tool_call(
                            rid, out.index, out.name, out.call_id, out.arguments
                        )
                    )
                elif isinstance(out, UsageOut):
                    self.apply(
                        self.session.on_response_usage(
                            rid, out.input_tokens, out.output_tokens, out.cached_tokens
                        )
                    )
                elif isinstance(out, DoneOut):
                    reason = out.reason
        except BackendError as exc:
            log.warning("session %s: response %s failed: %s", self.session.id, rid, exc.code)
            self.apply(self.session.on_response_failed(rid, exc.code, exc.message))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s: response %s crashed", self.session.id, rid)
            self.apply(
                self.session.on_response_failed(rid, "server_error", f"Internal error: {type(exc).__name__}")
            )
            return
        finally:
            self._tasks.pop(rid, None)
        self.apply(self.session.on_response_done(rid, self._clock(), reason=reason))
        self._wake_timer.set()

    async def _transcribe(self, effect: fx.StartTranscription) -> None:
        await self._stt.run_transcription(effect)

    async def _transcript_of(self, ctx: ContextItem) -> str:
        """A user audio item's transcript for the LLM: the one the session already has."""
        result = await self._stt.transcript(
            str(ctx.wire.get("id")), ctx.audio or b"", ctx.audio_format, TranscriptionOptions()
        )
        return result.text
