"""The gateway configuration file: profiles, upstreams, routes, and clear errors."""

from __future__ import annotations

import pytest

from rtgate.server.config import ConfigError, load_config, parse_config

EXAMPLE = """
[profiles.fast]
llm = { kind = "llamacpp", model_path = "/models/x.gguf" }

[upstreams.azure]
kind = "azure"
base_url = "https://res.openai.azure.com/openai/v1/"
api_key_env = "AZURE_OPENAI_API_KEY"
model = "gpt-realtime"

[[routes]]
model = "gpt-realtime-mini*"
upstream = "azure"

[[routes]]
model = "fast-*"
profile = "fast"
"""


def test_example_parses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rtgate.toml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.profiles["fast"].llm == {"kind": "llamacpp", "model_path": "/models/x.gguf"}
    assert config.profiles["fast"].stt is None
    assert config.upstreams["azure"].base_url == "https://res.openai.azure.com/openai/v1"
    assert [r.model for r in config.routes] == ["gpt-realtime-mini*", "fast-*"]


@pytest.mark.parametrize(
    "doc,fragment",
    [
        ({"bogus": {}}, "unknown key 'bogus'"),
        ({"profiles": {"p": {"llm": {"model_path": "x"}}}}, "profiles.p.llm: missing required key 'kind'"),
        ({"upstreams": {"u": {"kind": "aws", "base_url": "https://x", "api_key_env": "K"}}}, "not one of"),
        ({"upstreams": {"u": {"kind": "openai", "base_url": "ftp://x", "api_key_env": "K"}}}, "base_url"),
        ({"routes": [{"model": "m"}]}, "exactly one of"),
        ({"routes": [{"model": "m", "profile": "nope"}]}, "no profile named 'nope'"),
        ({"routes": [{"model": "m", "upstream": "nope"}]}, "no upstream named 'nope'"),
    ],
)
def test_invalid_configs_name_the_key(doc: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        parse_config(doc)


def test_unreadable_and_malformed_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
