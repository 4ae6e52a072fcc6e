"""Pipeline profiles from the gateway configuration file (docs/configuration.md).

Contract of :func:`pipelines_from_config`:

* every ``[profiles.X]`` becomes a :class:`~rtgate.pipeline.responder.Pipeline` named X;
  each stage comes from its engine table through
  :func:`~rtgate.pipeline.engines.registry.build_engine`;
* a stage a profile does not name uses the embedded default engine of that stage;
* engines are shared: two stages with equal engine tables get the same instance, and the
  embedded defaults are built once, so one model is loaded per process;
* ``[profiles.default]`` replaces the embedded default profile (stage by stage);
* nothing is loaded here: construction only, models load in ``warm_up()``;
* every engine's deadlines are the ``backend_*_s`` settings, unless its engine table has a
  ``deadlines`` table of its own;
* a bad engine table raises :class:`~rtgate.server.config.ConfigError` naming the profile
  and the stage.

:func:`profile_routes` gives the ``[[routes]]`` whose target is a profile, in file order,
as :class:`~rtgate.server.routing.ModelRouter` takes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ..pipeline.base import LLM, STT, TTS, Backend, Deadlines
from ..pipeline.engines.registry import build_engine
from ..pipeline.responder import Pipeline
from .config import STAGES, ConfigError, GatewayConfig, ProfileConfig, load_config
from .settings import Settings

DEFAULT_ENGINES: dict[str, dict[str, Any]] = {
    "stt": {"kind": "faster-whisper"},
    "llm": {"kind": "llamacpp"},
    "tts": {"kind": "espeak"},
}
"""The embedded default stack, as engine tables (see ``registry.build_default_stack``)."""


_LOADED: dict[str, tuple[tuple[int, int], GatewayConfig]] = {}


def gateway_config(settings: Settings) -> GatewayConfig:
    """The parsed ``settings.config_file``, or an empty configuration without one.

    The file is read and parsed once per process: the profiles, the model router and the
    start-up checks all get the same :class:`GatewayConfig`. It is parsed again only when
    the file on disk has changed since (its modification time or size differ)."""
    path = settings.server.config_file
    if not path:
        return GatewayConfig()
    try:
        stat = os.stat(path)
    except OSError:
        return load_config(path)  # raises the ConfigError that names the file
    stamp = (stat.st_mtime_ns, stat.st_size)
    loaded = _LOADED.get(path)
    if loaded is None or loaded[0] != stamp:
        loaded = _LOADED[path] = (stamp, load_config(path))
    return loaded[1]


class EngineCache:
    """Builds engines, one instance per distinct engine table; ``deadlines`` bounds every
    engine's calls unless its table sets its own (``registry.build_engine``)."""

    def __init__(self, source: str = "config", deadlines: Deadlines | None = None) -> None:
        self._engines: dict[tuple[str, str], Backend] = {}
        self._source = source
        self._deadlines = deadlines

    def get(self, stage: str, table: dict[str, Any], where: str) -> Backend:
        key = (stage, json.dumps(table, sort_keys=True, default=str))
        engine = self._engines.get(key)
        if engine is None:
            try:
                engine = build_engine(stage, table, self._deadlines)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ConfigError(f"{self._source}: {where}: {exc}") from None
            self._engines[key] = engine
        return engine


def pipelines_from_config(
    config: GatewayConfig,
    *,
    default: Callable[[EngineCache], Pipeline] | None = None,
    source: str = "config",
    deadlines: Deadlines | None = None,
) -> dict[str, Pipeline]:
    """Every configured profile, plus ``default`` (embedded unless configured); every
    engine built here gets ``deadlines`` (the ``backend_*_s`` settings)."""
    cache = EngineCache(source, deadlines)
    pipelines: dict[str, Pipeline] = {}
    if "default" not in config.profiles:
        pipelines["default"] = (default or _embedded_default)(cache)
    for name, profile in config.profiles.items():
        pipelines[name] = _pipeline(profile, cache)
    # The default profile first: it is the one official model names reach.
    return {"default": pipelines.pop("default"), **pipelines}


def _embedded_default(cache: EngineCache) -> Pipeline:
    return _pipeline(ProfileConfig(name="default"), cache)


def _pipeline(profile: ProfileConfig, cache: EngineCache) -> Pipeline:
    engines: dict[str, Backend] = {}
    for stage in STAGES:
        table = getattr(profile, stage)
        where = f"profiles.{profile.name}.{stage}" if table is not None else f"default {stage}"
        engines[stage] = cache.get(stage, table if table is not None else DEFAULT_ENGINES[stage], where)
    llm, tts, stt = engines["llm"], engines["tts"], engines["stt"]
    assert isinstance(llm, LLM) and isinstance(tts, TTS) and isinstance(stt, STT)
    return Pipeline(profile.name, llm, tts, stt)


def profile_routes(settings: Settings, profiles: dict[str, Pipeline] | None = None) -> dict[str, str]:
    """Model pattern → profile name for the config's ``[[routes]]`` with a ``profile``.

    Routes to a profile missing from ``profiles`` (when given) are left out, so the model
    keeps getting ``invalid_model`` rather than reaching the wrong stack.
    """
    routes: dict[str, str] = {}
    for route in gateway_config(settings).routes:
        if route.profile is None or route.model in routes:
            continue
        if profiles is not None and route.profile not in profiles:
            continue
        routes[route.model] = route.profile
    return routes
