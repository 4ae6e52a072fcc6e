"""Profiles and model routes from the gateway config file, end to end through the SDK.

The routed profile's LLM is the OpenAI-compatible network backend pointed at the in-test
upstream on 127.0.0.1, so the whole path is real: config file → registry → router →
session → chat completions → ``response.output_text.delta``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from rtgate.cli import main
from rtgate.pipeline.engines.espeak import EspeakTTS
from rtgate.pipeline.engines.openai_compat import OpenAIChatLLM
from rtgate.pipeline.engines.whisper import FasterWhisperSTT
from rtgate.server.app import build_profiles
from rtgate.server.config import ConfigError
from rtgate.server.profiles import profile_routes
from rtgate.server.settings import Settings
from rtgate.testing.server import running_server
from rtgate.testing.validate import validate_server_event

from .upstream import API_KEY, Upstream

KEY_ENV = "RTGATE_TEST_UPSTREAM_KEY"


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rtgate.toml"
    path.write_text(text)
    return str(path)


def network_stack(upstream: Upstream, model: str) -> str:
    """Three network stages on the in-test upstream: nothing to load at start-up."""
    common = f'base_url = "{upstream.base_url}", api_key_env = "{KEY_ENV}"'
    return (
        f'stt = {{ kind = "openai", {common}, model = "{model}-stt" }}\n'
        f'llm = {{ kind = "openai", {common}, model = "{model}" }}\n'
        f'tts = {{ kind = "openai", {common}, model = "{model}-tts" }}\n'
    )


async def text_turn(base_url: str, model: str) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-any")
    events: list[dict[str, Any]] = []
    async with client.realtime.connect(model=model) as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
        )
        await conn.response.create()
        while not events or events[-1]["type"] not in ("response.done", "error"):
            event = json.loads(await conn.recv_bytes())
            validate_server_event(event)
            events.append(event)
    return events


async def test_a_routed_model_reaches_its_profile(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[[routes]] model → profile: the client's model selects the configured stack."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(
        tmp_path,
        f"[profiles.default]\n{network_stack(upstream, 'default-llm')}\n"
        f"[profiles.house]\n{network_stack(upstream, 'house-llm')}\n"
        '[[routes]]\nmodel = "house-*"\nprofile = "house"\n',
    )
    settings = Settings(config_file=config)
    with running_server(settings, profiles=build_profiles, vad_factory=lambda: None) as handle:
        for model, upstream_model in (("house-1", "house-llm"), ("gpt-realtime", "default-llm")):
            events = await text_turn(handle.base_url, model)
            text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
            assert text == "Hello from upstream."
            assert events[-1]["response"]["status"] == "completed"
            chats = [r for r in upstream.requests if r["path"] == "chat"]
            assert chats[-1]["body"]["model"] == upstream_model


async def test_an_unknown_model_still_gets_invalid_model(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(
        tmp_path,
        f"[profiles.default]\n{network_stack(upstream, 'd')}\n"
        '[[routes]]\nmodel = "house-*"\nprofile = "default"\n',
    )
    with running_server(Settings(config_file=config), profiles=build_profiles,
                        vad_factory=lambda: None) as handle:
        client = AsyncOpenAI(base_url=handle.base_url, api_key="sk-any")
        async with client.realtime.connect(model="no-such-model") as conn:
            event = json.loads(await conn.recv_bytes())
    assert event["type"] == "error"
    assert event["error"]["code"] == "invalid_model"


def test_missing_stages_share_the_embedded_engines(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage a profile leaves out is the embedded engine, one instance for all profiles."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    llm = f'llm = {{ kind = "openai", base_url = "{upstream.base_url}", model = "m", api_key_env = "{KEY_ENV}" }}'
    config = write_config(
        tmp_path,
        f"[profiles.a]\n{llm}\n[profiles.b]\n{llm}\n[profiles.c]\n"
        'tts = { kind = "espeak" }\n',
    )
    profiles = build_profiles(Settings(config_file=config))
    assert list(profiles) == ["default", "a", "b", "c"]
    default, a, b, c = profiles.values()
    assert isinstance(a.llm, OpenAIChatLLM) and a.llm is b.llm
    assert isinstance(default.stt, FasterWhisperSTT)
    assert a.stt is default.stt is b.stt is c.stt
    assert isinstance(c.tts, EspeakTTS) and c.tts is default.tts
    assert c.llm is default.llm


def test_profile_default_replaces_the_embedded_default(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(tmp_path, f"[profiles.default]\n{network_stack(upstream, 'x')}")
    profiles = build_profiles(Settings(config_file=config))
    assert list(profiles) == ["default"]
    assert isinstance(profiles["default"].llm, OpenAIChatLLM)


def test_profile_routes_keep_file_order_and_skip_upstreams(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        '[profiles.fast]\ntts = { kind = "espeak" }\n'
        '[upstreams.az]\nkind = "azure"\nbase_url = "https://x.example/openai/v1"\napi_key_env = "K"\n'
        '[[routes]]\nmodel = "a*"\nprofile = "fast"\n'
        '[[routes]]\nmodel = "b*"\nupstream = "az"\n'
        '[[routes]]\nmodel = "c*"\nprofile = "default"\n',
    )
    assert profile_routes(Settings(config_file=config)) == {"a*": "fast", "c*": "default"}


def test_a_bad_engine_table_names_profile_and_stage(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[profiles.x]\nllm = { kind = "gpt-9" }\n')
    with pytest.raises(ConfigError, match=r"profiles\.x\.llm: llm\.kind is 'gpt-9'"):
        build_profiles(Settings(config_file=config))


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("[profiles.x]\nllm = { kind = 'gpt-9' }\n", "profiles.x.llm"),
        ("[profiles.x\n", "invalid TOML"),
        ("[profiles.x]\nllm = { kind = 'openai', base_url = 'http://h', model = 'm', "
         "api_key_env = 'RTGATE_TEST_UNSET_VARIABLE' }\n", "RTGATE_TEST_UNSET_VARIABLE"),
    ],
)
def test_serve_exits_2_on_a_bad_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    config = write_config(tmp_path, text)
    assert main(["serve", "--pipeline", "builtin", "--config", config]) == 2
    assert fragment in capsys.readouterr().err


def test_serve_exits_2_on_a_missing_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
