"""Voice assistant on the openai-python Preview realtime client (client.beta.realtime)."""

import asyncio
import base64
import os

from openai import AsyncOpenAI

SESSION = {
    "modalities": ["text", "audio"],
    "instructions": "You are a friendly assistant.",
    "voice": "alloy",
}


async def main() -> None:
    client = AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"])
    async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        await conn.session.update(
            session={
                "modalities": ["text", "audio"],
                "voice": "alloy",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                "input_audio_transcription": {"model": "whisper-1"},
                "temperature": 0.8,
                "max_response_output_tokens": 512,
            }
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say hello"}],
            }
        )
        await conn.response.create(response={"modalities": ["text"], "temperature": 0.7})
        transcript = []
        async for event in conn:
            if event.type == "response.text.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "response.audio.delta":
                play(base64.b64decode(event.delta))
            elif event.type == "response.audio_transcript.delta":
                transcript.append(event.delta)
            elif event.type == "conversation.item.created":
                print("item", event.item.id)
            elif event.type == "response.done":
                break


def play(pcm: bytes) -> None:
    pass


async def mint_key() -> str:
    client = AsyncOpenAI()
    session = await client.beta.realtime.sessions.create(model="gpt-4o-realtime-preview")
    return session.client_secret.value


if __name__ == "__main__":
    asyncio.run(main())
