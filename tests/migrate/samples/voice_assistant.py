"""Voice assistant written against the Realtime API Preview (openai-python 1.6x beta client).

A self-written sample in the style of the Preview-era quickstarts: one session with server
VAD and transcription, a typed user turn, spoken answer streamed to a buffer. Every event is
logged as one JSON line; the last line is a summary.
"""

import asyncio
import base64
import json
import os
import sys

from openai import AsyncOpenAI

async def main() -> int:
    client = AsyncOpenAI()  # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
    audio = bytearray()
    transcript = ""
    updated = None
    async with client.beta.realtime.connect(model="gpt-4o-realtime-preview-2024-12-17") as conn:
        await conn.session.update(session={
            "modalities": ["text", "audio"],
            "instructions": "You are a friendly assistant. Answer in one short sentence.",
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
            },
            "temperature": 0.8,
            "max_response_output_tokens": 4096,
        })
        await conn.conversation.item.create(item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Say hello to the team."}],
        })
        await conn.response.create()
        async for event in conn:
            print(json.dumps(event.to_dict()), flush=True)
            if event.type == "session.updated":
                updated = event.session.to_dict()
            elif event.type == "response.audio.delta":
                audio.extend(base64.b64decode(event.delta))
            elif event.type == "response.audio_transcript.delta":
                transcript += event.delta
            elif event.type == "error":
                print(f"error: {event.error.message}", file=sys.stderr)
                return 1
            elif event.type == "response.done":
                break
    print(json.dumps({"summary": {"audio_bytes": len(audio), "transcript": transcript,
                                  "session": updated, "base_url": str(os.environ.get("OPENAI_BASE_URL"))}}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
