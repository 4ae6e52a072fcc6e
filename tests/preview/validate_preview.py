"""Strictly validate Preview server-event JSONL against an openai 1.x beta ``RealtimeServerEvent``.

usage: .venv-preview/bin/python tests/preview/validate_preview.py FILE.jsonl [...]

Runs inside ``.venv-preview`` (scripts/make-preview-venv.sh), never in the project venv: the
Preview models live in ``openai.types.beta.realtime`` of an old 1.x release. Picks the union
member whose ``type`` literal matches and runs pydantic ``model_validate`` (the SDK itself only
``construct``s, so this is stricter than any Preview client).

Two documented gaps between the SDK's beta models and what Preview servers sent on the wire:

* ``transcription_session.created`` was sent first on every Preview transcription socket but
  never joined the beta union; it is validated with the model of its twin,
  ``transcription_session.updated``.
* ``TranscriptionSession.client_secret`` is REQUIRED in the SDK (the model was written for the
  REST response) but ``null`` on a socket, as in the Preview ``session.created`` example in
  SPEC §11.4; socket events are validated with that one field optional.

A line ``{"rest": "sessions" | "transcription_sessions", "body": {...}}`` is a REST response
body instead, validated with ``SessionCreateResponse`` / ``TranscriptionSession``.

Exit status 0 when every event is valid, 1 otherwise; one line per invalid event.
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Optional, Union, get_args, get_origin

import openai
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent
from openai.types.beta.realtime.session_create_response import SessionCreateResponse
from openai.types.beta.realtime.transcription_session import ClientSecret, TranscriptionSession
from openai.types.beta.realtime.transcription_session_updated_event import (
    TranscriptionSessionUpdatedEvent,
)


def members(u: object) -> list[type]:
    o = get_origin(u)
    if o is typing.Annotated:
        return members(get_args(u)[0])
    if o is Union:
        return [m for a in get_args(u) for m in members(a)]
    return [u]  # type: ignore[list-item]


class SocketTranscriptionSession(TranscriptionSession):
    client_secret: Optional[ClientSecret] = None  # noqa: UP045 (pydantic on 3.9+ venvs)


class SocketTranscriptionSessionEvent(TranscriptionSessionUpdatedEvent):
    session: SocketTranscriptionSession  # type: ignore[assignment]
    type: str  # type: ignore[assignment]


BY_TYPE: dict[str, type] = {}
for m in members(RealtimeServerEvent):
    for v in get_args(m.model_fields["type"].annotation):  # type: ignore[attr-defined]
        BY_TYPE[v] = m
UNION_TYPES = frozenset(BY_TYPE)
for t in ("transcription_session.created", "transcription_session.updated"):
    BY_TYPE[t] = SocketTranscriptionSessionEvent

REST: dict[str, type] = {
    "sessions": SessionCreateResponse,
    "transcription_sessions": TranscriptionSession,
}


def main(paths: list[str]) -> int:
    bad = total = 0
    for p in paths:
        with open(p) as f:
            for ln, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                total += 1
                obj = json.loads(line)
                if "rest" in obj:
                    t, model, obj = obj["rest"], REST[obj["rest"]], obj["body"]
                else:
                    t = obj.get("type")
                    model = BY_TYPE.get(t)
                if model is None:
                    bad += 1
                    print(
                        f"{p}:{ln}: UNKNOWN type {t!r} (not in beta RealtimeServerEvent "
                        f"of openai {openai.__version__})"
                    )
                    continue
                try:
                    model.model_validate(obj)  # type: ignore[attr-defined]
                except Exception as e:
                    bad += 1
                    print(f"{p}:{ln}: {t}: {str(e)[:600]}")
    print(f"openai {openai.__version__} beta: {total - bad}/{total} events valid")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--types"]:
        print(json.dumps(sorted(UNION_TYPES)))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
