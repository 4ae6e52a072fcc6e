"""``RTGATE_*`` variables are parsed by each setting's real type, and the config file once."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtgate.server.profiles import gateway_config
from rtgate.server.settings import FLAT_NAMES, Settings, _field_types


def test_every_setting_has_a_type_the_environment_can_give() -> None:
    """A new setting whose type ``from_env`` cannot parse fails here, not in production."""
    types = _field_types()
    assert set(types) == set(FLAT_NAMES)
    assert set(types.values()) <= {str, int, float, bool, tuple}
    assert types["port"] is int and types["send_deadline_s"] is float
    assert types["relay_splice"] is bool and types["api_keys"] is tuple
    assert types["redis_url"] is str  # ``str | None``


def test_values_are_parsed_by_type() -> None:
    settings = Settings.from_env({
        "RTGATE_PORT": "9001", "RTGATE_BACKEND_TOTAL_S": "12.5", "RTGATE_RELAY_SPLICE": "off",
        "RTGATE_ALLOW_UNAUTHENTICATED": "yes", "RTGATE_API_KEYS": "sk-a, sk-b,,",
        "RTGATE_REDIS_URL": "redis://127.0.0.1:6379/0", "RTGATE_WORKERS": "auto",
    })
    assert settings.server.port == 9001
    assert settings.backend.total_s == 12.5
    assert settings.backend.deadlines().total_s == 12.5
    assert settings.relay.splice is False
    assert settings.auth.allow_unauthenticated is True
    assert settings.auth.api_keys == ("sk-a", "sk-b")
    assert settings.cluster.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.server.workers == 0


@pytest.mark.parametrize("name,raw,expected", [
    ("RTGATE_PORT", "80.5", "expected int, got '80.5'"),
    ("RTGATE_BACKEND_FIRST_CHUNK_S", "soon", "expected float, got 'soon'"),
    ("RTGATE_RELAY_SPLICE", "maybe", "expected bool, got 'maybe'"),
    ("RTGATE_MAX_CONVERSATIONS", "many", "expected int or auto, got 'many'"),
])
def test_a_bad_value_names_the_variable_and_what_it_takes(name: str, raw: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}: {expected}$"):
        Settings.from_env({name: raw})


def test_flags_override_the_environment() -> None:
    settings = Settings.from_env({"RTGATE_BACKEND_NEXT_CHUNK_S": "3"}, backend_next_chunk_s=4.0)
    assert settings.backend.next_chunk_s == 4.0


def test_the_config_file_is_parsed_once_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "rtgate.toml"
    path.write_text('[profiles.fast]\ntts = { kind = "espeak" }\n')
    settings = Settings(config_file=str(path))
    first = gateway_config(settings)
    assert gateway_config(settings) is first
    assert gateway_config(settings.replace(port=9)) is first  # same file, other settings
    path.write_text('[profiles.fast]\ntts = { kind = "espeak" }\n[profiles.slow]\n')
    changed = gateway_config(settings)
    assert changed is not first and set(changed.profiles) == {"fast", "slow"}
