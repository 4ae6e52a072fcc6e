"""Model routing: the ``model`` a client asks for selects a pipeline profile or an upstream.

Official model and deployment names that existing apps already send map to the default
profile; configuration may route names or glob patterns elsewhere — to a local profile or
to a cloud upstream (the relay, :mod:`rtgate.relay`). Routes are checked in order, first
match wins, before the official names. A name that matches nothing gets the cloud's
``invalid_model`` error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..pipeline.responder import Pipeline
from .config import GatewayConfig, UpstreamConfig

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

RouteTarget = str | UpstreamConfig
"""A profile name, or the upstream a model is relayed to."""


@dataclass(slots=True)
class ModelRouter:
    profiles: dict[str, Pipeline]
    default_profile: str = "default"
    routes: Mapping[str, RouteTarget] = field(default_factory=dict)
    """Model name or glob pattern → profile name or upstream, in order; checked before the
    official names."""

    @classmethod
    def from_config(cls, profiles: dict[str, Pipeline], config: GatewayConfig) -> ModelRouter:
        """The config file's ``[[routes]]`` in file order (the first route for a pattern wins).

        A route to a profile missing from ``profiles`` is left out, so the model keeps getting
        ``invalid_model`` rather than reaching the wrong stack.
        """
        routes: dict[str, RouteTarget] = {}
        for route in config.routes:
            if route.model in routes:
                continue
            if route.upstream is not None:
                routes[route.model] = config.upstreams[route.upstream]
            elif route.profile is not None and route.profile in profiles:
                routes[route.model] = route.profile
        return cls(profiles, routes=routes)

    def route(self, model: str) -> Pipeline | UpstreamConfig | None:
        """The local pipeline or the upstream serving ``model``; ``None``: no such model."""
        for pattern, target in self.routes.items():
            if fnmatch.fnmatchcase(model, pattern):
                return target if isinstance(target, UpstreamConfig) else self.profiles.get(target)
        if any(fnmatch.fnmatchcase(model, p) for p in OFFICIAL_MODEL_PATTERNS):
            return self.profiles.get(self.default_profile)
        return None

    def resolve(self, model: str) -> Pipeline | None:
        """The local pipeline for ``model``; ``None`` when it is unknown or relayed."""
        target = self.route(model)
        return target if isinstance(target, Pipeline) else None

    def upstream_for(self, model: str) -> UpstreamConfig | None:
        """The upstream ``model`` is relayed to, or ``None`` when it is served locally."""
        target = self.route(model)
        return target if isinstance(target, UpstreamConfig) else None

    @property
    def default(self) -> Pipeline:
        return self.profiles[self.default_profile]
