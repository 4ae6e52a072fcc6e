"""The gateway configuration file: pipeline profiles, cloud upstreams and model routes.

A TOML file given with ``rtgate serve --config FILE`` (or ``RTGATE_CONFIG_FILE``)::

    [profiles.default]            # replaces the embedded default stack, stage by stage
    llm = { kind = "openai", base_url = "http://127.0.0.1:11434/v1", model = "llama3.1" }

    [profiles.fast]
    stt = { kind = "faster-whisper" }
    llm = { kind = "llamacpp", model_path = "/models/qwen2.5-1.5b-instruct-q4_k_m.gguf" }
    tts = { kind = "piper" }

    [upstreams.azure]
    kind = "azure"                # "azure" (api-key header) or "openai" (Bearer)
    base_url = "https://my-resource.openai.azure.com/openai/v1"
    api_key_env = "AZURE_OPENAI_API_KEY"   # the credential is read from the environment
    model = "gpt-realtime"        # upstream model / deployment; default: the client's
    client_secrets = "rtgate"     # or "upstream": client_secrets mints at the upstream (docs/relay.md)

    [[routes]]                    # checked in order, before the official model names
    model = "gpt-realtime-mini*"  # a model name or glob pattern
    upstream = "azure"            # or: profile = "fast"

Engine tables (``stt``/``llm``/``tts``) are passed to
:func:`rtgate.pipeline.engines.registry.build_engine`; a stage a profile does not name
uses the embedded default engine. Secrets never live in the file: only the *names* of
environment variables that hold them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..relay.config import UpstreamConfig as UpstreamConfig  # the relay owns it; re-exported

STAGES = ("stt", "llm", "tts")
UPSTREAM_KINDS = ("azure", "openai")


class ConfigError(ValueError):
    """The configuration file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    name: str
    stt: dict[str, Any] | None = None
    llm: dict[str, Any] | None = None
    tts: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RouteConfig:
    model: str
    profile: str | None = None
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(allowed)}")


def _string(table: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: missing required key {key!r}")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a non-empty string")
    return value


def _client_secrets(table: dict[str, Any], where: str) -> Literal["rtgate", "upstream"]:
    value = _string(table, "client_secrets", where, required=False) or "rtgate"
    if value not in ("rtgate", "upstream"):
        raise ConfigError(f"{where}.client_secrets: {value!r} is not one of rtgate, upstream")
    return value  # type: ignore[return-value]


def parse_config(data: dict[str, Any], source: str = "config") -> GatewayConfig:
    """Validate a parsed TOML document; raises :class:`ConfigError` naming the bad key."""
    _unknown(data, ("profiles", "upstreams", "routes"), source)
    profiles: dict[str, ProfileConfig] = {}
    for name, raw in _table(data.get("profiles", {}), f"{source}: profiles").items():
        where = f"{source}: profiles.{name}"
        table = _table(raw, where)
        _unknown(table, STAGES, where)
        stages = {}
        for stage in STAGES:
            if stage in table:
                engine = _table(table[stage], f"{where}.{stage}")
                _string(engine, "kind", f"{where}.{stage}", required=True)
                stages[stage] = dict(engine)
        profiles[name] = ProfileConfig(name=name, **stages)
    upstreams: dict[str, UpstreamConfig] = {}
    for name, raw in _table(data.get("upstreams", {}), f"{source}: upstreams").items():
        where = f"{source}: upstreams.{name}"
        table = _table(raw, where)
        _unknown(table, ("kind", "base_url", "api_key_env", "model", "client_secrets"), where)
        kind = _string(table, "kind", where, required=True)
        if kind not in UPSTREAM_KINDS:
            raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(UPSTREAM_KINDS)}")
        base_url = _string(table, "base_url", where, required=True) or ""
        if not base_url.startswith(("https://", "http://", "wss://", "ws://")):
            raise ConfigError(f"{where}.base_url: expected an http(s):// or ws(s):// URL")
        upstreams[name] = UpstreamConfig(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            base_url=base_url.rstrip("/"),
            api_key_env=_string(table, "api_key_env", where, required=True) or "",
            model=_string(table, "model", where, required=False),
            client_secrets=_client_secrets(table, where),
        )
    routes: list[RouteConfig] = []
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{source}: routes: expected an array of tables ([[routes]])")
    for index, raw in enumerate(raw_routes):
        where = f"{source}: routes[{index}]"
        table = _table(raw, where)
        _unknown(table, ("model", "profile", "upstream"), where)
        model = _string(table, "model", where, required=True) or ""
        profile = _string(table, "profile", where, required=False)
        upstream = _string(table, "upstream", where, required=False)
        if (profile is None) == (upstream is None):
            raise ConfigError(f"{where}: give exactly one of 'profile' or 'upstream'")
        if profile is not None and profile not in profiles and profile != "default":
            raise ConfigError(f"{where}.profile: no profile named {profile!r}")
        if upstream is not None and upstream not in upstreams:
            raise ConfigError(f"{where}.upstream: no upstream named {upstream!r}")
        routes.append(RouteConfig(model=model, profile=profile, upstream=upstream))
    return GatewayConfig(profiles=profiles, upstreams=upstreams, routes=tuple(routes))


def load_config(path: str | Path) -> GatewayConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, str(path))
