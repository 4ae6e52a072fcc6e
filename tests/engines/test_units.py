"""Engine helpers and configuration that need no model: fast, always run."""

from __future__ import annotations

import pytest

from rtgate.pipeline.base import ToolSpec
from rtgate.pipeline.engines.espeak import VOICES, rate_for_speed, resolve_voice
from rtgate.pipeline.engines.llama import LlamaCppLLM, match_tool_by_keywords, normalise_messages
from rtgate.pipeline.engines.openai_compat import (
    OpenAIChatLLM,
    OpenAISpeechTTS,
    OpenAITranscriptionSTT,
)
from rtgate.pipeline.engines.registry import build_default_stack, build_engine
from rtgate.pipeline.engines.wer import word_error_rate
from rtgate.pipeline.engines.whisper import FasterWhisperSTT, short_context_mode
from rtgate.pipeline.engines.whisper_context import consistent_with_prefix

WEATHER = ToolSpec(name="get_weather", description="Get the current weather for a city.")
TIME = ToolSpec(name="get_time", description="Get the current time in a timezone.")


def test_keyword_policy_picks_tools_by_shared_words() -> None:
    """auto with the keywords policy: a shared content word selects the tool, else none."""
    assert match_tool_by_keywords([WEATHER, TIME], "How's the weather in Rome?") is WEATHER
    assert match_tool_by_keywords([WEATHER, TIME], "What time is it in Tokyo?") is TIME
    assert match_tool_by_keywords([WEATHER, TIME], "Tell me a joke") is None


def test_messages_are_normalised_for_any_chat_template() -> None:
    """Tool calls and results become plain text turns; system messages merge."""
    out = normalise_messages(
        [
            {"role": "system", "content": "a"},
            {"role": "developer", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "x", "content": "42"},
        ]
    )
    assert out == [
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "(called f with {})"},
        {"role": "user", "content": "f returned: 42"},
    ]


def test_word_error_rate() -> None:
    """WER counts substitutions, deletions and insertions over reference words."""
    assert word_error_rate("Hello, world!", "hello world") == 0.0
    assert word_error_rate("the lazy dog", "the lady dog") == pytest.approx(1 / 3)
    assert word_error_rate("a b", "a b c d") == 1.0
    assert word_error_rate("Set a timer for fifteen minutes.", "set a timer for 15 minutes") == 0.0


def test_espeak_voice_table_and_rate() -> None:
    """All ten OpenAI voices map; speed scales 175 wpm within espeak's 80-450."""
    assert set(VOICES) == {
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    }
    assert resolve_voice("Coral") == VOICES["coral"]
    assert resolve_voice("en-gb") == "en-gb"
    assert rate_for_speed(1.0) == 175
    assert rate_for_speed(1.5) == 262
    assert rate_for_speed(0.25) == 80


def test_default_stack_is_built_without_loading() -> None:
    """build_default_stack returns the embedded engines; models load on warm_up."""
    stack = build_default_stack()
    assert isinstance(stack.stt, FasterWhisperSTT)
    assert isinstance(stack.llm, LlamaCppLLM)
    assert stack.llm.model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (stack.stt.model_dir / "model.bin").is_file()


def test_openai_engines_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """kind openai builds each stage; the key comes from the named environment variable."""
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    common = {
        "kind": "openai",
        "base_url": "http://127.0.0.1:1/v1",
        "api_key_env": "TEST_UPSTREAM_KEY",
    }
    llm = build_engine("llm", {**common, "model": "gpt-4o-mini", "deadlines": {"first_chunk_s": 3}})
    assert isinstance(llm, OpenAIChatLLM)
    assert llm.endpoint.api_key == "sk-from-env" and llm.deadlines.first_chunk_s == 3
    assert "sk-from-env" not in repr(llm.endpoint)
    assert isinstance(build_engine("stt", {**common, "model": "whisper-1"}), OpenAITranscriptionSTT)
    tts = build_engine("tts", {**common, "model": "tts-1", "azure": True, "api_version": "2025-04-01"})
    assert isinstance(tts, OpenAISpeechTTS) and tts.endpoint.headers() == {"api-key": "sk-from-env"}


@pytest.mark.parametrize(
    ("stage", "config", "message"),
    [
        ("tts", {"kind": "llamacpp"}, "tts.kind is 'llamacpp'; allowed: espeak, openai, piper"),
        ("llm", {"kind": "llamacpp", "gpu": True}, "unknown option(s) gpu"),
        ("llm", {"kind": "openai", "model": "m"}, "needs base_url"),
        (
            "llm",
            {
                "kind": "openai",
                "base_url": "http://x",
                "model": "m",
                "api_key_env": "RTGATE_UNSET_KEY_XYZ",
            },
            "RTGATE_UNSET_KEY_XYZ, which is not set",
        ),
        ("stt", {"kind": "faster-whisper", "model": "large"}, "allowed: tiny.en, base"),
        ("stt", {"kind": "faster-whisper", "deadlines": {"total": 1}}, "deadlines takes"),
        ("stt", {"kind": "faster-whisper", "short_context": "fast"}, "short_context must be one of off, verified, always"),
    ],
)
def test_bad_configuration_names_the_problem(stage: str, config: dict[str, object], message: str) -> None:
    """Configuration errors say which key is wrong and what is allowed."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_engine(stage, config)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reference", "text", "agrees"),
    [
        # The prefix's last word may be cut in half: it is not checked.
        ("What is the weather like", "What is the weather like in Paris today?", True),
        ("what is the wea", "What is the weather like in Paris today?", True),
        ("The quick brown fox jumps over the", "The quick brown fox jumps over the lazy dog.", True),
        # One wrong word in five is too many (90 % must match, in order).
        ("What is the weather like?", "What is no ever like in Paris today?", False),
        ("The quick brown fox jumps over the", "The quick round fast jump, so we're really done", False),
        # Under two checkable words there is no evidence either way.
        ("Hello there", "Hello there.", False),
        (None, "Hello there.", False),
        ("", "anything", False),
        # The reference's words must come first, not somewhere later.
        ("turn off the lights in", "please could you turn off the lights in the hall", False),
    ],
)
def test_short_window_result_is_checked_against_the_prefix_pass(
    reference: str | None, text: str, agrees: bool
) -> None:
    assert consistent_with_prefix(reference, text) is agrees


def test_short_context_modes() -> None:
    assert short_context_mode(True) == "always"
    assert short_context_mode(False) == "off"
    assert short_context_mode("verified") == "verified"
    assert FasterWhisperSTT().short_context == "verified"  # the default
    assert FasterWhisperSTT(beam_size=2).short_context == "off"  # the short path is greedy only
    with pytest.raises(ValueError, match="short_context"):
        FasterWhisperSTT(short_context="sometimes")  # type: ignore[arg-type]


def test_piper_voice_file_is_its_custom_voice() -> None:
    """A Piper profile maps the custom voice {"id": <voice file name>} (docs/fields.md)."""
    from rtgate.pipeline.engines.piper import PiperTTS

    assert PiperTTS(model_path="/voices/en_GB-alan-low.onnx").custom_voices == frozenset({"en_GB-alan-low"})
