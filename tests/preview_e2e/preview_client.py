"""A Preview (beta) client: openai 1.x ``client.beta.realtime`` against a running rtgate.

usage: .venv-preview/bin/python tests/preview_e2e/preview_client.py --port PORT --key KEY [--rest]

Runs inside ``.venv-preview`` (scripts/make-preview-venv.sh), never in the project venv.
Plays each scenario below over its own connection, reads raw frames with ``recv_bytes``,
validates every server event strictly with the SDK's own beta models (the ``BY_TYPE`` table
of tests/preview/validate_preview.py) and prints one JSON object on stdout:
``{scenario: {"events": [...], "invalid": [...], "error": str | null, ...}}``. The pytest
side (test_preview_sdk.py) asserts on it. Exit status 0 unless the script itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))

from openai import AsyncOpenAI
from validate_preview import BY_TYPE, REST

MODEL = "gpt-4o-realtime-preview-2024-12-17"
RECV_TIMEOUT_S = 10.0

Event = dict[str, Any]


def tone_pcm16(ms: int, hz: float = 440.0, rate: int = 24000) -> bytes:
    n = rate * ms // 1000
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))


class Recorder:
    """Reads and strictly validates events from one connection."""

    def __init__(self, conn: Any, out: dict[str, Any]) -> None:
        self.conn = conn
        self.out = out
        out.setdefault("events", [])
        out.setdefault("invalid", [])

    async def next(self) -> Event:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), RECV_TIMEOUT_S)
        event = json.loads(raw)
        self.out["events"].append(event)
        model = BY_TYPE.get(event.get("type"))
        if model is None:
            self.out["invalid"].append(f"{event.get('type')}: not a Preview server event")
        else:
            try:
                model.model_validate(event)
            except Exception as exc:  # pydantic.ValidationError
                self.out["invalid"].append(f"{event.get('type')}: {str(exc)[:400]}")
        return event

    async def until(self, type_: str) -> list[Event]:
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event["type"] == type_:
                return seen


def validate_rest(kind: str, body: dict[str, Any], out: dict[str, Any]) -> None:
    out.setdefault("invalid", [])
    try:
        REST[kind].model_validate(body)
    except Exception as exc:
        out["invalid"].append(f"REST {kind}: {str(exc)[:400]}")


class Scenarios:
    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key

    def client(self, key: str | None = None) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=key or self.key,
            base_url=f"http://127.0.0.1:{self.port}/v1",
            websocket_base_url=f"ws://127.0.0.1:{self.port}/v1",
        )

    async def text(self, out: dict[str, Any]) -> None:
        """Preview text turn: session.update modalities ["text"], item, response."""
        async with self.client().beta.realtime.connect(model=MODEL) as conn:
            rec = Recorder(conn, out)
            await rec.next()  # session.created
            await rec.next()  # conversation.created
            await conn.session.update(session={"modalities": ["text"], "temperature": 0.7})
            await rec.until("session.updated")
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi there"}],
                }
            )
            await conn.response.create()
            await rec.until("response.done")

    async def audio(self, out: dict[str, Any]) -> None:
        """Preview audio turn: pcm16 in, manual commit, audio + transcript out."""
        async with self.client().beta.realtime.connect(model=MODEL) as conn:
            rec = Recorder(conn, out)
            await rec.until("conversation.created")
            await conn.session.update(
                session={
                    "modalities": ["audio", "text"],
                    "input_audio_format": "pcm16",
                    "output_audio_format": "pcm16",
                    "voice": "alloy",
                    "turn_detection": None,
                }
            )
            await rec.until("session.updated")
            pcm = tone_pcm16(600)
            for i in range(0, len(pcm), 4800):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
            await conn.input_audio_buffer.commit()
            await rec.until("conversation.item.created")
            await conn.response.create()
            await rec.until("response.done")

    async def untranslatable(self, out: dict[str, Any]) -> None:
        """A Preview value with no GA form is answered with an error carrying event_id."""
        async with self.client().beta.realtime.connect(model=MODEL) as conn:
            rec = Recorder(conn, out)
            await rec.until("conversation.created")
            await conn.send(
                {
                    "type": "session.update",
                    "event_id": "evt_client_1",
                    "session": {"input_audio_format": "pcm24"},
                }
            )
            await rec.until("error")
            # The session lives on: a valid update still works.
            await conn.session.update(session={"modalities": ["text"]})
            await rec.until("session.updated")

    async def transcription(self, out: dict[str, Any]) -> None:
        """?intent=transcription: transcription_session.created / .updated."""
        async with self.client().beta.realtime.connect(
            model=MODEL, extra_query={"intent": "transcription"}
        ) as conn:
            rec = Recorder(conn, out)
            await rec.next()
            await conn.transcription_session.update(
                session={
                    "input_audio_format": "pcm16",
                    "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                }
            )
            await rec.until("transcription_session.updated")

    async def rest_sessions(self, out: dict[str, Any]) -> None:
        """POST /v1/realtime/sessions, then a Preview socket opened with the minted key."""
        created = await self.client().beta.realtime.sessions.with_raw_response.create(
            model=MODEL, modalities=["text"], instructions="Be brief.", voice="verse"
        )
        body = json.loads(created.text)
        out["rest"] = body
        validate_rest("sessions", body, out)
        async with self.client(body["client_secret"]["value"]).beta.realtime.connect(model=MODEL) as conn:
            rec = Recorder(conn, out)
            await rec.until("conversation.created")

    async def rest_transcription_sessions(self, out: dict[str, Any]) -> None:
        """POST /v1/realtime/transcription_sessions; the key opens a transcription socket."""
        created = await self.client().beta.realtime.transcription_sessions.with_raw_response.create(
            input_audio_format="pcm16",
            input_audio_transcription={"model": "gpt-4o-transcribe"},
        )
        body = json.loads(created.text)
        out["rest"] = body
        validate_rest("transcription_sessions", body, out)
        async with self.client(body["client_secret"]["value"]).beta.realtime.connect(model=MODEL) as conn:
            rec = Recorder(conn, out)
            await rec.next()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rest", action="store_true", help="also run the REST key scenarios")
    args = parser.parse_args(argv)
    s = Scenarios(args.port, args.key)
    plays: dict[str, Callable[[dict[str, Any]], Any]] = {
        "text": s.text,
        "audio": s.audio,
        "untranslatable": s.untranslatable,
        "transcription": s.transcription,
    }
    if args.rest:
        plays["rest_sessions"] = s.rest_sessions
        plays["rest_transcription_sessions"] = s.rest_transcription_sessions
    results: dict[str, Any] = {}

    async def play(name: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        out: dict[str, Any] = {"error": None}
        results[name] = out
        try:
            await fn(out)
        except Exception:
            out["error"] = traceback.format_exc(limit=3)

    await asyncio.gather(*(play(name, fn) for name, fn in plays.items()))
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
