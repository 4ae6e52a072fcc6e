"""Rule behaviour, one rule or one rule property per test."""

from __future__ import annotations

import pytest

from rtgate.migrate.derive import DERIVERS
from rtgate.migrate.engine import scan_text
from rtgate.migrate.fixer import fix_text
from rtgate.migrate.manifests import nuget_interval, requirement_interval
from rtgate.migrate.model import Lang
from rtgate.migrate.rules import RULES, RULES_BY_ID
from rtgate.protocol.dialects import SERVER_EVENT_RENAMES

from .helpers import only, rules

PY = Lang.PYTHON


def test_rule_ids_are_unique_and_documented() -> None:
    """Every rule has a unique id, a title, a message and a change (or a template)."""
    assert len(RULES_BY_ID) == len(RULES)
    for rule in RULES:
        assert rule.title and rule.message and rule.change, rule.id
        assert not rule.derive_name or rule.derive_name in DERIVERS, rule.id
        assert (rule.pattern is None) == bool(rule.analyzer), rule.id


@pytest.mark.parametrize(("preview", "ga"), sorted(SERVER_EVENT_RENAMES.items()))
def test_every_renamed_event_is_found_and_fixed(preview: str, ga: str) -> None:
    """Each Preview name of dialects.SERVER_EVENT_RENAMES is flagged and renamed."""
    text = f'if event.type == "{preview}":\n    pass\n'
    fixed, _ = fix_text(text, PY)
    assert rules(text, PY) == ["event-renamed"]
    assert fixed == f'if event.type == "{ga}":\n    pass\n'


def test_code_handling_both_names_is_not_flagged() -> None:
    """A handler that already takes the GA name as well works on GA: no finding, no rename
    (a duplicate case would not compile)."""
    text = 'switch (t) { case "response.text.delta": case "response.output_text.delta": break; }'
    assert only(text, Lang.JS, "event-renamed") == []
    assert fix_text(text, Lang.JS) == (None, "")


def test_event_in_comment_text_without_quotes_is_ignored() -> None:
    """Prose mentioning an event name is not a handler."""
    assert rules("# we used to handle response.text.delta here\n", PY) == []


def test_content_part_types_are_not_flagged() -> None:
    """response.content_part.* parts keep type text/audio in GA (SPEC §5)."""
    text = 'if (e.type === "response.content_part.added" && e.part.type === "audio") {}\n'
    assert rules(text, Lang.JS) == []


def test_ignore_comment_same_line_and_previous_line() -> None:
    """rtgate: ignore[rule] on the line or the line before suppresses that rule only."""
    text = (
        'a = "response.text.delta"  # rtgate: ignore[event-renamed]\n'
        "# rtgate: ignore[event-renamed]\n"
        'b = "response.audio.delta"\n'
        'c = "response.audio.done"  # rtgate: ignore[beta-header]\n'
        'd = "response.text.done"  # rtgate: ignore\n'
    )
    assert [f.line for f in scan_text(text, PY)] == [4]


@pytest.mark.parametrize(
    ("url", "fixed"),
    [
        (
            "wss://r.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=d",
            "wss://r.openai.azure.com/openai/v1/realtime?model=d",
        ),
        (
            "wss://r.openai.azure.com/openai/realtime?deployment=d&api-version=2025-04-01-preview",
            "wss://r.openai.azure.com/openai/v1/realtime?model=d",
        ),
        (
            "wss://r.openai.azure.com/openai/v1/realtime?model=d&api-version=2025-04-01-preview",
            "wss://r.openai.azure.com/openai/v1/realtime?model=d",
        ),
        (
            "wss://r.openai.azure.com/openai/v1/realtime?deployment=d",
            "wss://r.openai.azure.com/openai/v1/realtime?model=d",
        ),
        (
            "wss://r.openai.azure.com/openai/v1/realtime?api-version=v&deployment=d",
            "wss://r.openai.azure.com/openai/v1/realtime?model=d",
        ),
    ],
)
def test_endpoint_urls_are_rewritten(url: str, fixed: str) -> None:
    """Preview paths, api-version and deployment= become the GA URL."""
    out, _ = fix_text(f'URL = "{url}"\n', PY)
    assert out == f'URL = "{fixed}"\n'


def test_positional_format_url_is_reported_not_fixed() -> None:
    """Dropping api-version={} would shift .format() arguments: report only."""
    text = 'URL = "wss://h/openai/realtime?api-version={}&deployment={}".format(v, d)\n'
    [finding] = only(text, PY, "endpoint-preview-path")
    assert not finding.fixable


def test_azure_sdk_client_secrets_path_is_not_flagged() -> None:
    """The AzureOpenAI client's own /openai/realtime/client_secrets call is GA."""
    assert rules('p = "/openai/realtime/client_secrets?api-version=2025-08-28"\n', PY) == []


def test_beta_sdp_exchange_but_not_the_ga_websocket_url() -> None:
    """https://…/v1/realtime?model= is the beta SDP POST; wss://…/v1/realtime?model= is GA."""
    assert rules('u = "https://api.openai.com/v1/realtime?model=m"\n', PY) == ["webrtc-beta-sdp"]
    assert rules('u = "wss://api.openai.com/v1/realtime?model=m"\n', PY) == []


def test_beta_subprotocol_removed_from_list() -> None:
    """The openai-beta.realtime-v1 subprotocol is dropped from the protocols array."""
    text = 'new WebSocket(u, ["realtime", "openai-beta.realtime-v1"]);\n'
    fixed, _ = fix_text(text, Lang.JS)
    assert fixed == 'new WebSocket(u, ["realtime"]);\n'


def test_session_update_without_type_gets_type_in_key_style() -> None:
    """The inserted type key follows the object's quoting and layout."""
    fixed, _ = fix_text("ws.send({type: 'session.update', session: {instructions: 'x'}});\n", Lang.JS)
    assert fixed == ("ws.send({type: 'session.update', session: {type: 'realtime', instructions: 'x'}});\n")


def test_session_with_spread_is_not_reported_missing_type() -> None:
    """A spread may carry type: the checker does not guess."""
    text = 'send({type: "session.update", session: {...base, instructions: "x"}})\n'
    assert "session-missing-type" not in rules(text, Lang.JS)


def test_escaped_json_session_update() -> None:
    """JSON inside a Java/C# string literal is analysed too."""
    text = 'String s = "{\\"type\\":\\"session.update\\",\\"session\\":{\\"voice\\":\\"alloy\\"}}";\n'
    assert rules(text, Lang.JAVA) == ["session-missing-type", "session-preview-field"]


def test_preview_audio_format_string_in_ga_position() -> None:
    """format: "pcm16" under audio.input becomes the GA format object."""
    text = 'S = {"type": "realtime", "audio": {"input": {"format": "pcm16"}}}\n'
    fixed, _ = fix_text(text, PY)
    ga = '{"type": "audio/pcm", "rate": 24000}'
    assert fixed == f'S = {{"type": "realtime", "audio": {{"input": {{"format": {ga}}}}}}}\n'


def test_transcription_session_update_is_reported() -> None:
    """The Preview client event transcription_session.update is gone in GA."""
    text = 'ws.send(JSON.stringify({type: "transcription_session.update", session: {}}));\n'
    assert rules(text, Lang.JS) == ["event-transcription-session-update"]


@pytest.mark.parametrize(
    ("spec", "npm", "verdict"),
    [
        ("==1.60.0", False, "error"),
        (">=1.40,<1.100", False, "error"),
        ("~=1.55", False, "floor"),
        (">=1.54.0", False, "floor"),
        (">=1.107.0", False, None),
        ("==1.107.0", False, None),
        ("==2.*", False, None),
        ("^4.77.0", True, "error"),
        ("4.77.0", True, "error"),
        ("^5.20.0", True, None),
        (">=4 <6", True, "floor"),
        ("^4.0.0 || ^5.20.0", True, "floor"),
        ("*", True, None),
    ],
)
def test_version_requirements(spec: str, npm: bool, verdict: str | None) -> None:
    """Requirements that cannot reach the minimum are errors; low floors are warnings."""
    minimum = (5, 20, 0, 1) if npm else (1, 107, 0, 1)
    iv = requirement_interval(spec, npm=npm)
    if iv is None:
        assert verdict is None
        return
    if iv.high is not None and iv.high <= minimum:
        got = "error"
    elif iv.low is None or iv.low < minimum:
        got = "floor"
    else:
        got = None
    assert got == verdict


@pytest.mark.parametrize(
    ("spec", "below"),
    [
        ("2.1.0-beta.2", True),
        ("2.8.0", True),
        ("[2.9.0]", False),
        ("2.9.0", False),
        ("[2.0.0, 2.5.0)", True),
        ("2.10.0", False),
    ],
)
def test_nuget_versions(spec: str, below: bool) -> None:
    """NuGet versions resolve to their lowest applicable version."""
    iv = nuget_interval(spec)
    assert iv is not None and iv.low is not None
    assert (iv.low < (2, 9, 0, 1)) is below


def test_poetry_caret_and_unpinned_requirements() -> None:
    """Poetry ^1.50 admits 1.107 but also older (warning); a bare name is not reported."""
    text = '[tool.poetry.dependencies]\nopenai = "^1.50.0"\n'
    assert rules(text, Lang.PYPROJECT) == ["sdk-version-floor"]
    assert rules("openai\nrequests\n", Lang.REQUIREMENTS) == []


def test_beta_header_call_arguments_are_not_removed() -> None:
    """h.add("OpenAI-Beta", "realtime=v1") is reported; removing the arguments would break it."""
    [finding] = only('h.add("OpenAI-Beta", "realtime=v1")\n', PY, "beta-header")
    assert not finding.fixable


def test_beta_header_list_string_is_removed() -> None:
    """websocket-client's header=["OpenAI-Beta: realtime=v1"] loses the element."""
    text = 'ws = create_connection(u, header=["api-key: k", "OpenAI-Beta: realtime=v1"])\n'
    fixed, _ = fix_text(text, PY)
    assert fixed == 'ws = create_connection(u, header=["api-key: k"])\n'
