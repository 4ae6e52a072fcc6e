"""Server settings: every limit in one place, with units and safe defaults, in groups.

:class:`Settings` is a frozen object made of frozen groups (server/settings_groups.py):
``settings.sip.port``, ``settings.capacity.max_sessions``. A component that needs one
group is handed that group. What users write stays flat: each setting has one *flat name*
(``sip_port``, ``max_sessions``) used by its ``RTGATE_<NAME>`` variable, its flag and
docs/configuration.md, and :data:`FLAT_NAMES` maps it to its group and field.

Values come from (lowest to highest precedence) the defaults, ``RTGATE_*`` environment
variables, and command-line flags; :meth:`Settings.from_env` parses them once, by each
field's declared type. :meth:`Settings.describe` prints them at start-up, group by group,
with secrets masked.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from .settings_groups import (
    LOOPS,
    MIB,
    AuthSettings,
    BackendSettings,
    CapacitySettings,
    ClusterSettings,
    DecodeSettings,
    McpSettings,
    OutboundSettings,
    PreauthSettings,
    RelaySettings,
    ServerSettings,
    SessionSettings,
    ShutdownSettings,
    SipSettings,
    WebhookSettings,
    WebRTCCallSettings,
    WebSocketSettings,
)

__all__ = ["AUTO_ZERO", "FLAT_NAMES", "GROUPS", "LOOPS", "MIB", "Settings"]

AUTO_ZERO = frozenset({"workers", "max_conversations", "max_unauthenticated_connections"})
"""Settings whose 0 means "automatic": their variables also accept ``auto``."""

SECRET_SUFFIXES = ("_credential", "_password", "_secret")
"""Settings whose flat name ends so are printed as ``***`` when set."""


@dataclass(frozen=True, slots=True, init=False)
class Settings:
    """Every setting, in groups; immutable once built.

    ``Settings(**values)`` takes flat names (``Settings(max_sessions=5, sip_port=5070)``),
    whole groups by their name (``Settings(sip=SipSettings(port=5070))``), or both (the
    flat names then change the given group). An unknown name is a :class:`TypeError`; a
    bad value a :class:`ValueError` naming the setting.
    """

    server: ServerSettings
    auth: AuthSettings
    capacity: CapacitySettings
    shutdown: ShutdownSettings
    cluster: ClusterSettings
    preauth: PreauthSettings
    decode: DecodeSettings
    outbound: OutboundSettings
    websocket: WebSocketSettings
    session: SessionSettings
    backend: BackendSettings
    mcp: McpSettings
    webrtc: WebRTCCallSettings
    relay: RelaySettings
    sip: SipSettings
    webhooks: WebhookSettings

    def __init__(self, **values: Any) -> None:
        changes: dict[str, dict[str, Any]] = {}
        given: dict[str, Any] = {}
        for name, value in values.items():
            if name in GROUPS:
                if not isinstance(value, GROUPS[name]):
                    raise TypeError(f"Settings: {name} must be a {GROUPS[name].__name__}, "
                                    f"got {type(value).__name__}")
                given[name] = value
            elif name in FLAT_NAMES:
                group, field = FLAT_NAMES[name]
                changes.setdefault(group, {})[field] = value
            else:
                raise TypeError(f"Settings: unknown setting {name!r}")
        for group, kind in GROUPS.items():
            base, change = given.get(group), changes.get(group)
            if base is None:
                value = kind(**(change or {}))
            elif change:
                value = dataclasses.replace(base, **change)
            else:
                value = base  # shared: a replace() that leaves a group alone keeps it
            object.__setattr__(self, group, value)
        if self.sip.port:
            from .sip_checks import check_sip_settings

            check_sip_settings(self)

    @property
    def open_access(self) -> bool:
        """No keys configured: any key is accepted (local development only)."""
        return self.auth.open_access

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (flat names or whole groups, as the constructor takes)."""
        return Settings(**{group: getattr(self, group) for group in GROUPS}, **changes)

    def flat(self) -> Iterator[tuple[str, Any]]:
        """``(flat name, value)`` of every setting, group by group."""
        for name, (group, field) in FLAT_NAMES.items():
            yield name, getattr(getattr(self, group), field)

    def describe(self) -> str:
        """Every setting under its group's name, by flat name; secrets and the Redis
        password masked, API and admin keys counted."""
        lines = []
        current = ""
        for name, value in self.flat():
            group = FLAT_NAMES[name][0]
            if group != current:
                lines.append(f"  {group}:")
                current = group
            lines.append(f"    {name:<38} {_shown(name, value)}")
        return "\n".join(lines)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``RTGATE_<FLAT_NAME>`` variables, then ``overrides`` (flat names;
        ``None`` values are skipped, so unset flags can be passed as they are)."""
        env = os.environ if environ is None else environ
        types = _field_types()
        values: dict[str, Any] = {}
        for name in FLAT_NAMES:
            raw = env.get(f"RTGATE_{name.upper()}")
            if raw is not None:
                values[name] = _parse(name, raw, types[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


GROUPS: dict[str, type[Any]] = dict(get_type_hints(Settings))
"""Each group's attribute name on :class:`Settings` and its class, in print order."""


def _flat_names() -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for group, kind in GROUPS.items():
        prefix = getattr(kind, "prefix", "")
        for f in fields(kind):
            names[prefix + f.name] = (group, f.name)
    return names


FLAT_NAMES: dict[str, tuple[str, str]] = _flat_names()
"""Each flat name (what users write, ``RTGATE_<NAME>`` upper-cased) -> (group, field)."""


@functools.cache
def _field_types() -> dict[str, type]:
    """Each flat name's value type: its field's resolved annotation (the modules use
    postponed annotations, so ``Field.type`` is only a string), ``X | None`` reduced to
    ``X``, ``tuple[...]`` to ``tuple``."""
    types: dict[str, type] = {}
    hints = {group: get_type_hints(kind) for group, kind in GROUPS.items()}
    for name, (group, field) in FLAT_NAMES.items():
        hint = hints[group][field]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
        if origin is tuple:
            types[name] = tuple
        elif args and origin is not None:  # Optional[X] / X | None
            types[name] = args[0]
        else:
            types[name] = hint
    return types


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _parse(name: str, raw: str, kind: type) -> Any:
    """``raw`` (the ``RTGATE_<NAME>`` variable) as a value of type ``kind``."""
    try:
        if kind is tuple:
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        if kind is bool:
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(word)
            return word in _TRUE
        if kind is int:
            if name in AUTO_ZERO and raw.strip().lower() == "auto":
                return 0
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        expected = f"{kind.__name__} or auto" if name in AUTO_ZERO else kind.__name__
        raise ValueError(f"RTGATE_{name.upper()}: expected {expected}, got {raw!r}") from None
    return raw


def _shown(name: str, value: Any) -> object:
    """``value`` as the start-up print shows it: no secret in the clear."""
    if name == "api_keys":
        return f"{len(value)} configured" if value else "none (any key accepted)"
    if name == "admin_keys":
        return f"{len(value)} configured" if value else "none (admin routes off)"
    if name == "redis_url" and value:
        return _mask_url(value)
    if name.endswith(SECRET_SUFFIXES) and value:
        return "***"
    return value


def _mask_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"
