"""Azure OpenAI realtime assistant on the Preview rtclient SDK (aoai-realtime-audio-sdk)."""

import asyncio
import os

from azure.core.credentials import AzureKeyCredential
from rtclient import InputTextContentPart, RTLowLevelClient, SessionUpdateMessage, UserMessageItem
from rtclient.models import ServerVAD, SessionUpdateParams

ENDPOINT = os.environ["AZURE_OPENAI_ENDPOINT"]
DEPLOYMENT = os.environ.get("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-realtime-preview")
WS_URL = f"{ENDPOINT}/openai/realtime?api-version=2024-10-01-preview&deployment={DEPLOYMENT}"


async def run() -> None:
    async with RTLowLevelClient(
        url=ENDPOINT, key_credential=AzureKeyCredential(os.environ["AZURE_OPENAI_API_KEY"]),
        azure_deployment=DEPLOYMENT,
    ) as client:
        await client.send(
            SessionUpdateMessage(session=SessionUpdateParams(turn_detection=ServerVAD()))
        )
        async for message in client:
            if message.type == "response.audio_transcript.delta":
                print(message.delta, end="")
            elif message.type == "response.done":
                break


if __name__ == "__main__":
    asyncio.run(run())
