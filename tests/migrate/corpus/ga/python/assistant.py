"""Voice assistant on the GA realtime client (openai >= 1.107)."""

import asyncio
import base64

from openai import AsyncOpenAI


async def main() -> None:
    client = AsyncOpenAI(websocket_base_url="wss://contoso.openai.azure.com/openai/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "max_output_tokens": 512,
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad"},
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
                },
            }
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi, how can I help?"}],
            }
        )
        await conn.response.create(response={"output_modalities": ["text"]})
        async for event in conn:
            if event.type == "response.output_text.delta":
                print(event.delta, end="")
            elif event.type == "response.output_audio.delta":
                base64.b64decode(event.delta)
            elif event.type == "response.content_part.added" and event.part.type == "audio":
                pass
            elif event.type == "conversation.item.added":
                pass
            elif event.type == "response.done":
                break


async def mint_key() -> str:
    client = AsyncOpenAI()
    secret = await client.realtime.client_secrets.create(
        session={"type": "realtime", "model": "gpt-realtime"}
    )
    return secret.value


if __name__ == "__main__":
    asyncio.run(main())
