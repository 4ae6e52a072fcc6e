"""Misses and false alarms found on real Preview-era repositories (issue 15), one pattern per
test, each on a small hand-written snippet in the shape those apps use."""

from __future__ import annotations

from pathlib import Path

from rtgate.migrate.check import run_check
from rtgate.migrate.engine import scan_text
from rtgate.migrate.fixer import fix_text
from rtgate.migrate.model import Lang

from .helpers import only, rules

PY, JS, TS = Lang.PYTHON, Lang.JS, Lang.TS


def _fields(text: str, lang: Lang) -> list[str]:
    return [f.message.split("'")[1] for f in only(text, lang, "session-preview-field")]


# ---------------------------------------------------------------- misses


def test_event_behind_a_dispatcher_prefix() -> None:
    """openai-realtime-api-beta style `on('server.response.audio.delta')` is found and renamed
    with its prefix kept."""
    text = "this.realtime.on('server.response.audio.delta', handlerWithDispatch);\n"
    assert rules(text, JS) == ["event-renamed"]
    fixed, _ = fix_text(text, JS)
    assert fixed == "this.realtime.on('server.response.output_audio.delta', handlerWithDispatch);\n"


def test_session_fields_assigned_one_by_one() -> None:
    """`session["voice"] = …` and `x.session.input_audio_transcription = …` are Preview fields."""
    py = (
        'session = {"instructions": system_message}\n'
        'session["voice"] = self.voice_choice\n'
        'session["max_response_output_tokens"] = self.max_tokens\n'
    )
    assert _fields(py, PY) == ["voice", "max_response_output_tokens"]
    ts = "command.session.input_audio_transcription = { model: 'whisper-1' };\n"
    assert _fields(ts, TS) == ["input_audio_transcription"]
    js = (
        "voice !== void 0 && (this.sessionConfig.voice = voice);\n"
        "this.realtime.send('session.update', { session: { ...this.sessionConfig } });\n"
    )
    assert _fields(js, JS) == ["voice"]


def test_default_session_config_object_sent_later() -> None:
    """A default config built in one place and sent later is a Preview session."""
    text = (
        "this.defaultSessionConfig = {\n"
        "  modalities: ['text', 'audio'],\n"
        "  instructions: '',\n"
        "  voice: 'verse',\n"
        "  input_audio_format: 'pcm16',\n"
        "  turn_detection: null,\n"
        "};\n"
    )
    assert _fields(text, JS) == ["modalities", "voice", "input_audio_format", "turn_detection"]


def test_session_shape_declared_as_pydantic_model() -> None:
    """A pydantic model of the Preview session is reported field by field."""
    text = (
        "class SessionProperties(BaseModel):\n"
        "    modalities: Optional[List[Literal['text', 'audio']]] = None\n"
        "    instructions: Optional[str] = None\n"
        "    voice: Optional[str] = None\n"
        "    input_audio_format: Optional[Literal['pcm16', 'g711_ulaw']] = None\n"
        "    temperature: Optional[float] = None\n"
    )
    assert _fields(text, PY) == ["modalities", "voice", "input_audio_format", "temperature"]


def test_session_shape_declared_as_ts_type_go_struct_and_yaml() -> None:
    """TypeScript members, Go struct tags and YAML keys of a Preview session."""
    ts = (
        "export type SessionUpdateCommand = {\n"
        "  session: {\n"
        "    turn_detection?: { type: 'server_vad' | 'none' };\n"
        "    input_audio_transcription?: { model: 'whisper-1' };\n"
        "  };\n"
        "};\n"
    )
    assert _fields(ts, TS) == ["turn_detection", "input_audio_transcription"]
    go = (
        "type Session struct {\n"
        '\tVoice            string `json:"voice,omitempty"`\n'
        '\tInputAudioFormat string `json:"input_audio_format,omitempty"`\n'
        "}\n"
    )
    assert _fields(go, Lang.GO) == ["voice", "input_audio_format"]
    yaml = "session:\n  voice: alloy\n  input_audio_format: pcm16\n"
    assert _fields(yaml, Lang.YAML) == ["voice", "input_audio_format"]


def test_weak_field_names_alone_are_not_sessions() -> None:
    """`voice`, `temperature` elsewhere (a TTS call, an LLM setting) are not flagged."""
    text = "class TTSSettings(BaseModel):\n    voice: str = 'alloy'\n    temperature: float = 0.7\n"
    assert rules(text, PY) == []
    assert rules("resp = client.chat.completions.create(model=m, temperature=0.2)\n", PY) == []


def test_response_create_through_a_send_dispatcher() -> None:
    """`send('response.create', {response: {modalities}})`: the payload is the second argument."""
    text = "client.realtime.send('response.create', { response: { modalities: ['text'] } });\n"
    assert rules(text, JS) == ["response-preview-field"]


def test_received_content_type_check() -> None:
    """`content.type == "audio"` on a received Realtime item is always false on GA."""
    text = (
        "ws.on('message', (data) => {\n"
        "  const event = JSON.parse(data);\n"
        "  if (event.type === 'response.output_item.done') {\n"
        "    const audioIndex = event.item.content.findIndex((c) => c.type === 'audio');\n"
        "  }\n"
        "});\n"
    )
    [finding] = only(text, JS, "content-type-compare")
    assert finding.line == 4 and finding.fixable
    fixed, _ = fix_text(text, JS)
    assert fixed is not None and "c.type === 'output_audio'" in fixed


def test_content_part_and_chat_content_checks_are_not_flagged() -> None:
    """content_part parts keep text/audio; chat-completions content parts are not Realtime."""
    realtime = "if (event.type === 'response.content_part.added' && event.content_part.type === 'audio') {}\n"
    assert only(realtime, JS, "content-type-compare") == []
    chat = (
        "for part in message.content:\n    if part.type == 'text' and content.type == 'text':\n        pass\n"
    )
    assert only(chat, PY, "content-type-compare") == []


def test_api_version_as_query_parameter() -> None:
    """api-version set through searchParams.set(...) or a params dict on a realtime URL."""
    js = (
        "const url = new URL(`${endpoint}/openai/realtime`);\n"
        "url.searchParams.set('api-version', '2024-10-01-preview');\n"
    )
    assert rules(js, JS).count("endpoint-api-version-param") == 1
    py = (
        'params = {"api-version": self.api_version, "deployment": self.deployment}\n'
        'async with session.ws_connect("/openai/realtime", params=params) as ws:\n'
    )
    assert "endpoint-api-version-param" in rules(py, PY)
    chat = 'params = {"api-version": "2024-06-01"}\nr = httpx.post(f"{e}/openai/deployments/d/chat/completions")\n'
    assert rules(chat, PY) == []


# ---------------------------------------------------------------- false alarms


def test_docstrings_and_comments_quoting_old_names() -> None:
    """Prose that quotes a Preview name is not a handler."""
    text = (
        "class ResponseTextDelta(ServerEvent):\n"
        '    """A text delta.\n\n'
        '    type: Event type, always "response.text.delta".\n'
        '    """\n\n'
        '    type: Literal["response.text.delta"]\n'
        '# we used to wait for "conversation.item.created" here\n'
    )
    assert [(f.rule.id, f.line) for f in scan_text(text, PY)] == [("event-renamed", 7)]
    js = '/** Fired on "response.audio.delta". */\nconst x = 1; // "response.audio.delta"\n'
    assert rules(js, JS) == []


def test_test_titles_quoting_old_names() -> None:
    """`it('receives "conversation.item.created"', …)` names a test, not an event."""
    text = (
        "it('Should waitForNextItem to receive \"conversation.item.created\" from user', async function () {\n"
        "  const item = await client.waitForNextItem();\n"
        "});\n"
        'describe("response.audio.delta", () => {});\n'
    )
    assert rules(text, JS) == []


def test_preview_to_ga_mapping_table_in_ga_code() -> None:
    """A bridge's mapping table from Preview to GA names is not Preview code."""
    text = (
        "SERVER_EVENT_RENAMES = {\n"
        '    "response.text.delta": "response.output_text.delta",\n'
        '    "response.audio.delta": "response.output_audio.delta",\n'
        "}\n"
        "PREVIEW_SESSION_FIELDS = {\n"
        '    "input_audio_format": "audio.input.format",\n'
        '    "voice": "audio.output.voice",\n'
        "}\n"
    )
    assert rules(text, PY) == []


def test_expression_handling_both_names() -> None:
    """A test that accepts both the Preview and the GA name already works on GA."""
    text = 'if event.type in ("response.audio.delta", "response.output_audio.delta"):\n    play(event)\n'
    assert rules(text, PY) == []


def test_other_vendor_realtime_api() -> None:
    """Gemini Live and Azure Voice Live borrow Preview shapes; they are not OpenAI's API."""
    gemini = (
        "# Gemini Multimodal Live setup\n"
        'config = {"model": "models/gemini-2.0-flash-live-001", "input_audio_transcription": {}}\n'
    )
    assert rules(gemini, PY) == []
    voicelive = (
        'url = f"wss://{res}.cognitiveservices.azure.com/voice-live/realtime?model=gpt-4o"\n'
        'if event["type"] == "response.audio.delta":\n'
        "    play(event)\n"
    )
    assert "event-renamed" not in rules(voicelive, PY)
    azure_ad = (
        'token = credential.get_token("https://cognitiveservices.azure.com/.default")\n'
        'if event["type"] == "response.audio.delta":\n'
        "    play(event)\n"
    )
    assert rules(azure_ad, PY) == ["event-renamed"]  # Azure OpenAI's own token scope


def test_sdk_version_of_an_openai_used_for_chat_only(tmp_path: Path) -> None:
    """An old openai pin in an app that uses openai only for chat completions (realtime over
    a raw WebSocket) is not reported; it is when the app uses the SDK's realtime client."""
    (tmp_path / "requirements.txt").write_text("openai==1.40.0\nwebsockets\n")
    (tmp_path / "chat.py").write_text("r = client.chat.completions.create(model=m, messages=msgs)\n")
    (tmp_path / "voice.py").write_text(
        "async with websockets.connect(URL, additional_headers=h) as ws:\n    pass\n"
    )
    assert [f.rule.id for f in run_check([str(tmp_path)]).findings] == []
    (tmp_path / "voice.py").write_text(
        'async with client.beta.realtime.connect(model="m") as conn:\n    pass\n'
    )
    assert "sdk-version-python" in [f.rule.id for f in run_check([str(tmp_path)]).findings]


def test_azure_openai_nuget_pin_of_a_preview_realtime_app(tmp_path: Path) -> None:
    """A C# app on Azure.AI.OpenAI 2.1.0-beta.x (whose realtime client is the Preview one)
    gets a finding on that pin; the same pin in a chat-only app, or 2.9.0-beta.1, does not."""
    csproj = (
        '<Project Sdk="Microsoft.NET.Sdk.Web">\n  <ItemGroup>\n'
        '    <PackageReference Include="Azure.AI.OpenAI" Version="2.1.0-beta.2" />\n'
        '    <PackageReference Include="Azure.Identity" Version="1.13.0" />\n'
        "  </ItemGroup>\n</Project>\n"
    )
    (tmp_path / "App.csproj").write_text(csproj)
    (tmp_path / "Chat.cs").write_text("var chat = client.GetChatClient(deployment);\n")
    assert [f.rule.id for f in run_check([str(tmp_path)]).findings] == []
    (tmp_path / "Voice.cs").write_text(
        "using OpenAI.RealtimeConversation;\nvar rt = client.GetRealtimeConversationClient(d);\n"
    )
    pins = [f for f in run_check([str(tmp_path)]).findings if f.rule.id == "sdk-version-dotnet"]
    assert [(f.path.endswith("App.csproj"), f.line, f.message.split(" is ")[0]) for f in pins] == [
        (True, 3, "Azure.AI.OpenAI 2.1.0-beta.2")
    ]
    assert pins[0].change == "reference Azure.AI.OpenAI 2.9.0-beta.1 or later"
    (tmp_path / "App.csproj").write_text(csproj.replace("2.1.0-beta.2", "2.9.0-beta.1"))
    assert "sdk-version-dotnet" not in [f.rule.id for f in run_check([str(tmp_path)]).findings]


def test_manifest_checked_alone_still_reports_its_pin(tmp_path: Path) -> None:
    """With no code in the run, the checker cannot tell: the pin is reported."""
    (tmp_path / "requirements.txt").write_text("openai==1.40.0\n")
    assert [f.rule.id for f in run_check([str(tmp_path)]).findings] == ["sdk-version-python"]


def test_same_dependency_reported_once() -> None:
    """`rtclient = { url = ".../aoai-realtime-audio-sdk/..." }` is one dependency, one finding."""
    text = (
        "[tool.poetry.dependencies]\n"
        'rtclient = { url = "https://github.com/Azure-Samples/aoai-realtime-audio-sdk/releases/'
        'download/py%2Fv0.5.3/rtclient-0.5.3.tar.gz" }\n'
    )
    assert rules(text, Lang.PYPROJECT) == ["sdk-rtclient-dependency"]


def test_import_finding_is_on_the_import_line() -> None:
    """The rtclient import finding points at the import, not at the blank line above it."""
    text = "import asyncio\n\n\nfrom rtclient import RTClient\n"
    [finding] = only(text, PY, "sdk-rtclient")
    assert (finding.line, finding.column) == (4, 1)


# ---------------------------------------------------------------- --fix never half


def test_session_update_with_preview_fields_is_not_half_fixed() -> None:
    """--fix migrates a session.update whole or not at all: an update it cannot rewrite
    completely (here a format held in a variable) is left alone, and the findings say why
    (GA rejects a half-migrated update)."""
    text = (
        "ws.send(JSON.stringify({\n"
        "  type: 'session.update',\n"
        "  session: { voice: 'alloy', input_audio_format: fmt, max_response_output_tokens: 5 },\n"
        "}));\n"
    )
    [missing] = only(text, JS, "session-missing-type")
    assert not missing.fixable and "unknown_parameter" in missing.change
    assert "'input_audio_format' is not a Preview format string literal" in missing.change
    assert not any(f.fixable for f in only(text, JS, "session-preview-field"))
    assert fix_text(text, JS) == (None, "")
    clean = "ws.send(JSON.stringify({type: 'session.update', session: {max_response_output_tokens: 5}}));\n"
    fixed, _ = fix_text(clean, JS)
    assert fixed == (
        "ws.send(JSON.stringify({type: 'session.update', session: {type: \"realtime\", max_output_tokens: 5}}));\n"
    )
