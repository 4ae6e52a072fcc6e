"""Settings are frozen groups filled once from the flat names users write."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from rtgate.core.limits import CoreLimits
from rtgate.mcp.limits import McpLimits
from rtgate.server.settings import FLAT_NAMES, GROUPS, Settings
from rtgate.server.settings_groups import SipSettings, WebRTCCallSettings


def test_every_flat_name_belongs_to_exactly_one_group_field() -> None:
    """The flat names are the groups' fields with their prefixes, none lost, none doubled,
    and no group is named like a setting (a grouped read never looks like a flat one)."""
    pairs = [(group, f.name) for group, kind in GROUPS.items() for f in dataclasses.fields(kind)]
    assert sorted(FLAT_NAMES.values()) == sorted(pairs)
    assert len(FLAT_NAMES) == len(pairs) == 83
    assert not set(GROUPS) & set(FLAT_NAMES)
    assert FLAT_NAMES["sip_port"] == ("sip", "port")
    assert FLAT_NAMES["max_sessions"] == ("capacity", "max_sessions")
    assert FLAT_NAMES["webhook_secret"] == ("webhooks", "secret")


def test_flat_names_fill_their_groups() -> None:
    settings = Settings(max_sessions=5, sip_port=5070, relay_splice=False, backend_total_s=9.0)
    assert settings.capacity.max_sessions == 5
    assert settings.sip.port == 5070
    assert settings.relay.splice is False
    assert settings.backend.total_s == 9.0
    assert settings.server == Settings().server  # untouched groups keep their defaults


def test_whole_groups_and_flat_names_combine() -> None:
    sip = SipSettings(port=5070, jitter_frames=3)
    settings = Settings(sip=sip, sip_jitter_frames=4)
    assert settings.sip.port == 5070 and settings.sip.jitter_frames == 4


def test_an_unknown_name_or_a_wrong_group_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown setting 'max_session'"):
        Settings(max_session=5)
    with pytest.raises(TypeError, match="sip must be a SipSettings, got WebRTCCallSettings"):
        Settings(sip=WebRTCCallSettings())


def test_settings_and_groups_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sip = SipSettings()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sip.port = 5  # type: ignore[misc]


def test_replace_changes_one_group_and_shares_the_others() -> None:
    settings = Settings(api_keys=("sk-a",))
    changed = settings.replace(port=9, webrtc_input_jitter_frames=2)
    assert changed.server.port == 9 and changed.webrtc.input_jitter_frames == 2
    assert changed.auth is settings.auth and changed.sip is settings.sip
    assert settings.server.port == 8000  # the original is unchanged
    assert dataclasses.replace(settings, max_items=7).session.max_items == 7


def test_checks_run_in_their_group_and_name_the_flat_setting() -> None:
    with pytest.raises(ValueError, match=r"^workers: expected a count or auto"):
        Settings(workers=-1)
    with pytest.raises(ValueError, match=r"^webrtc_udp_port_min/max: set both or neither"):
        Settings(webrtc_udp_port_min=40000)
    with pytest.raises(ValueError, match=r"^drain_timeout_s: expected seconds >= 0"):
        Settings(drain_timeout_s=-1)
    with pytest.raises(ValueError, match=r"^sip_port: expected a port"):
        Settings(sip_port=70000)


def test_groups_build_what_their_component_takes() -> None:
    settings = Settings(max_items=7, mcp_call_timeout_s=3.0, backend_first_chunk_s=2.0)
    assert settings.session.core_limits() == CoreLimits(max_items=7)
    assert settings.mcp.limits() == McpLimits(call_timeout_s=3.0)
    assert settings.backend.deadlines().first_chunk_s == 2.0


def test_describe_prints_every_setting_under_its_group() -> None:
    text = Settings(webhook_secret="whsec_" + "A" * 32, sip_port=5070,
                    webhook_urls=("http://127.0.0.1:1/hook",)).describe()
    lines = text.splitlines()
    assert [line.strip() for line in lines if not line.startswith("    ")] == [f"{g}:" for g in GROUPS]
    for name in FLAT_NAMES:
        assert sum(line.split()[0] == name for line in lines) == 1, name
    assert "A" * 32 not in text
    sip = lines.index("  sip:")
    assert lines[sip + 1].split() == ["sip_port", "5070"]


def test_settings_survive_a_worker_process_handoff() -> None:
    """Workers are spawned: their settings arrive pickled."""
    settings = Settings(max_sessions=5, sip_port=5070, api_keys=("sk-a",))
    assert pickle.loads(pickle.dumps(settings)) == settings
