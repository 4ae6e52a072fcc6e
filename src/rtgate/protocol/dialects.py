"""Preview (beta) ↔ GA name tables (docs/protocol.md, Preview dialect).

Data only: the Preview bridge (:mod:`rtgate.protocol.preview`) and the migration checker
(:mod:`rtgate.migrate`) both read these tables, so a rename is stated once.
"""

from __future__ import annotations

from typing import Final

# Server events whose type changed name. Preview name → GA name.
SERVER_EVENT_RENAMES: Final[dict[str, str]] = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
    "transcription_session.created": "session.created",
    "transcription_session.updated": "session.updated",
}

# Client events whose type changed name. Preview name → GA name.
CLIENT_EVENT_RENAMES: Final[dict[str, str]] = {
    "transcription_session.update": "session.update",
}

GA_TO_PREVIEW_SERVER_EVENTS: Final[dict[str, str]] = {
    ga: preview
    for preview, ga in SERVER_EVENT_RENAMES.items()
    if not preview.startswith("transcription_session.")
}

# Preview audio format strings ↔ GA format objects.
PREVIEW_AUDIO_FORMATS: Final[dict[str, dict[str, object]]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
GA_AUDIO_FORMAT_TO_PREVIEW: Final[dict[str, str]] = {
    str(fmt["type"]): name for name, fmt in PREVIEW_AUDIO_FORMATS.items()
}

# Flat Preview session fields → dotted GA location. ``None``: removed in GA.
PREVIEW_SESSION_FIELDS: Final[dict[str, str | None]] = {
    "modalities": "output_modalities",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "voice": "audio.output.voice",
    "speed": "audio.output.speed",
    "turn_detection": "audio.input.turn_detection",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "max_response_output_tokens": "max_output_tokens",
    "temperature": None,
}

# Assistant item content types. Preview → GA.
PREVIEW_CONTENT_TYPES: Final[dict[str, str]] = {
    "text": "output_text",
    "audio": "output_audio",
}

PREVIEW_BETA_HEADER: Final = ("OpenAI-Beta", "realtime=v1")
PREVIEW_BETA_SUBPROTOCOL: Final = "openai-beta.realtime-v1"
INSECURE_KEY_SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."
