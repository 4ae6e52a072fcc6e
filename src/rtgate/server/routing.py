"""Model routing: the ``model`` a client asks for selects a pipeline profile.

Official model and deployment names that existing apps already send map to the default
profile; configuration may route names or glob patterns elsewhere. A name that matches
nothing gets the cloud's ``invalid_model`` error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..pipeline.responder import Pipeline

OFFICIAL_MODEL_PATTERNS: tuple[str, ...] = (
    "gpt-realtime*",
    "gpt-4o-realtime-preview*",
    "gpt-4o-mini-realtime-preview*",
    "gpt-audio*",
    "gpt-4o-transcribe*",
    "gpt-4o-mini-transcribe*",
    "gpt-transcribe*",
    "gpt-live-transcribe*",
    "whisper-1",
    "rtgate*",
)


@dataclass(slots=True)
class ModelRouter:
    profiles: dict[str, Pipeline]
    default_profile: str = "default"
    routes: Mapping[str, str] = field(default_factory=dict)
    """Model name or glob pattern → profile name; checked before the official names."""

    def resolve(self, model: str) -> Pipeline | None:
        for pattern, profile in self.routes.items():
            if fnmatch.fnmatchcase(model, pattern):
                return self.profiles.get(profile)
        if any(fnmatch.fnmatchcase(model, p) for p in OFFICIAL_MODEL_PATTERNS):
            return self.profiles.get(self.default_profile)
        return None

    @property
    def default(self) -> Pipeline:
        return self.profiles[self.default_profile]
