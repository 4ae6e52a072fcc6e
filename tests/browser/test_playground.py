"""The playground in a real browser: Debian's Chromium, headless, with a WAV as microphone.

Chromium's fake media flags feed espeak-ng speech to ``getUserMedia``; the page mints an
ephemeral key (or takes one pasted), opens a WebRTC call, and must show the user's
transcript, play the assistant's audio (inbound RTP counted by ``getStats``), list the
call's events, time each turn, show tool calls and put errors where they happen.
Screenshots are taken into the test's tmp dir, checked (size, ink, the timeline's and the
error row's colours, decoded by Chromium in a blank page) and copied to
``test-artifacts/browser/``. Installing Chromium is part of ``scripts/setup.sh --test``;
without it (or without the ``playwright`` package) these tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import struct
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtgate.audio import resample_pcm16
from rtgate.server.settings import Settings
from rtgate.testing.audio import speech_pcm
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.transport.webrtc import live_peer_connections

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
MIC_RATE = 48_000
VIEWPORT = {"width": 1280, "height": 1000}
API_KEY = "sk-browser"
USER_SAYS = "what is the weather"
ASSISTANT_SAYS = "It is sunny and warm today."
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# The page's CSS colours: timeline segments and the error rows' border.
SPEECH, WAIT, ANSWER, ERROR_RED = (74, 127, 212), (227, 155, 45), (46, 158, 91), (179, 38, 30)

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is "
                                     "not installed (scripts/setup.sh --test installs it)")
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is not installed (scripts/setup.sh --test installs Debian's "
                "'chromium' when run as root with apt)", allow_module_level=True)


def write_microphone_wav(path: Path) -> None:
    """1 s of silence, the question spoken by espeak-ng, 1.5 s of silence; 48 kHz mono."""
    speech = resample_pcm16(asyncio.run(speech_pcm(USER_SAYS)), 24_000, MIC_RATE)
    silence = bytes(MIC_RATE * 2)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(MIC_RATE)
        wav.writeframes(silence + speech + silence + silence[: MIC_RATE])


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    from aioice.ice import get_host_addresses

    if not get_host_addresses(use_ipv4=True, use_ipv6=True):
        pytest.skip("WebRTC calls need a non-loopback network interface (aioice gathers no "
                    "127.0.0.1 host candidates)")
    settings = Settings(api_keys=(API_KEY,))
    # The fake model calls get_weather when the session has tools, and answers otherwise.
    llm = FakeLLM(ASSISTANT_SAYS, tool_calls=[("get_weather", '{"city": "Paris"}')])
    profiles = fake_profiles(llm, FakeTTS(ms_per_word=300), FakeSTT(USER_SAYS))
    with running_server(settings, profiles=profiles, vad_factory=FakeVAD) as handle:
        yield handle


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    wav = tmp_path / "microphone.wav"
    write_microphone_wav(wav)
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with tempfile.TemporaryDirectory() as profile, playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=args, viewport=VIEWPORT,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            yield page
            assert not page_errors, page_errors
        finally:
            context.close()


INBOUND_AUDIO = """async () => {
  const call = window.rtgateCall;
  if (!call) return null;
  let out = null;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio")
      out = {packets: s.packetsReceived, bytes: s.bytesReceived, energy: s.totalAudioEnergy || 0};
  });
  return out;
}"""

PNG_STATS = """async ({png, colours}) => {
  const blob = await (await fetch("data:image/png;base64," + png)).blob();
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const seen = new Set(), hits = colours.map(() => 0);
  let ink = 0;
  for (let i = 0; i < px.length; i += 4) {
    const r = px[i], g = px[i + 1], b = px[i + 2];
    if (r < 230 || g < 230 || b < 230) ink++;
    seen.add(((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4));
    colours.forEach(([cr, cg, cb], k) => {
      if (Math.abs(r - cr) + Math.abs(g - cg) + Math.abs(b - cb) < 24) hits[k]++;
    });
  }
  return {width: bitmap.width, height: bitmap.height, ink: ink / (px.length / 4),
          colours: seen.size, hits};
}"""


def screenshot(page: Any, target: Any, path: Path,
               colours: tuple[tuple[int, int, int], ...] = (), **kwargs: Any) -> dict[str, Any]:
    """Screenshot ``target`` (``page`` or a locator in it) to ``path`` (and
    test-artifacts/browser/);
    returns its size from the PNG header and pixel statistics decoded in a blank page:
    ``ink`` (share of non-white pixels), ``colours`` (distinct, 4 bits per channel) and
    ``hits`` (pixels near each of ``colours``)."""
    png = target.screenshot(path=str(path), **kwargs)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    blank = page.context.new_page()
    try:
        stats = blank.evaluate(PNG_STATS, {"png": base64.b64encode(png).decode(),
                                           "colours": [list(c) for c in colours]})
    finally:
        blank.close()
    assert (stats["width"], stats["height"]) == (width, height), stats
    return stats


def log_types(page: Any, direction: str) -> list[str]:
    return page.locator(f"#log li.{direction} .type").all_inner_texts()


def timeline_row(page: Any, turn: int) -> dict[str, str]:
    """The timeline row of ``turn`` as {column header: cell text}."""
    headers = page.locator("#turns thead th").all_inner_texts()
    cells = page.locator("#turns tr.turn").nth(turn - 1).locator("td").all_inner_texts()
    return dict(zip(headers, cells, strict=True))


def wait_for_heard_latency(page: Any, turn: int) -> None:
    """Until the turn's end of speech -> first audio is measured from the audio heard (it
    shows the output_audio_buffer.started arrival, marked "event", until then)."""
    page.locator("#turns tr.turn").nth(turn - 1).locator("td.latency").filter(
        has_text=re.compile(r"^\d+ ms.*→ heard$")).wait_for(timeout=20_000)


def test_spoken_question_shows_transcript_and_plays_answer_in_chromium(
    server: ServerHandle, browser_page: Any, tmp_path: Path
) -> None:
    """Connect with the keyboard, speak (WAV microphone): the user's transcript appears in
    the live region, the assistant's transcript follows, and its audio arrives over RTP."""
    page = browser_page
    page.goto(server.http_url + "/")
    page.get_by_label("API key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Connect", exact=True).focus()
    page.keyboard.press("Enter")
    transcript = page.locator("#transcript")
    try:
        transcript.get_by_text(f"You: {USER_SAYS}").wait_for(timeout=20_000)
        transcript.get_by_text(f"Assistant: {ASSISTANT_SAYS}").wait_for(timeout=20_000)
        page.wait_for_function(
            "async () => { const s = await (" + INBOUND_AUDIO + ")(); "
            "return s !== null && s.packets >= 50; }", timeout=20_000, polling=200)
        page.locator("#log .type", has_text="output_audio_buffer.stopped").wait_for(timeout=20_000)
    finally:
        page.screenshot(path=str(tmp_path / "playground-voice.png"), full_page=True)
    stats = page.evaluate(INBOUND_AUDIO)
    assert stats["bytes"] > 2_000, stats
    assert stats["energy"] > 0, stats  # decoded audio was not silence
    assert page.get_attribute("#transcript", "aria-live") == "polite"
    assert page.get_by_role("status").inner_text().startswith("connected")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "inbound-rtp.txt").write_text(f"{stats}\n")

    check_voice_turn_in_log_and_timeline(page, tmp_path)

    page.get_by_role("button", name="Disconnect").click()
    page.get_by_role("status").get_by_text("idle").wait_for(timeout=5_000)
    deadline = page.evaluate("Date.now()") + 10_000
    while live_peer_connections() and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(100)
    assert live_peer_connections() == 0, "the server kept the call after Disconnect"


def check_voice_turn_in_log_and_timeline(page: Any, tmp_path: Path) -> None:
    """The spoken turn's events are in the log (deltas grouped), the filter narrows it, a
    row expands to its JSON, the timeline measures end of speech -> first audio from the
    microphone and speaker levels, no key appears in the log, and the screenshots show it."""
    for expected in ["session.created", "input_audio_buffer.speech_started",
                     "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                     "conversation.item.input_audio_transcription.completed",
                     "response.created", "output_audio_buffer.started", "response.done",
                     "output_audio_buffer.stopped"]:
        # Waited for, not read once: on a loaded machine a transcription may complete
        # after the answer (SPEC §10.4 allows it), so its row can come last.
        page.locator("#log li.server .type", has_text=re.compile(rf"^{re.escape(expected)}$")).first.wait_for(
            timeout=20_000)
    server_types = log_types(page, "server")
    assert "session.created" in server_types
    deltas = page.locator("#log li", has=page.locator(
        ".type", has_text="response.output_audio_transcript.delta"))
    assert deltas.count() == 1  # one row for the part, with the count and the text so far
    assert re.fullmatch(rf"×\d+ {re.escape(ASSISTANT_SAYS)}", deltas.locator(".summary").inner_text())
    assert "POST /v1/realtime/client_secrets" in log_types(page, "page")

    page.get_by_label("Filter events").fill("speech_")
    visible = page.locator("#log li:visible .type").all_inner_texts()
    assert visible == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]
    assert re.fullmatch(r"2 of \d+ events shown", page.locator("#log-count").inner_text())
    page.get_by_label("Filter events").fill("")
    page.get_by_label("Direction").select_option("page")
    assert set(page.locator("#log li:visible").evaluate_all(
        "rows => rows.map(r => r.className)")) == {"page"}
    page.get_by_label("Direction").select_option("")

    row = page.locator("#log li", has=page.locator(".type", has_text="session.created"))
    button, pre = row.get_by_role("button"), row.locator("pre")
    assert button.get_attribute("aria-expanded") == "false" and pre.is_hidden()
    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    event = json.loads(pre.inner_text())
    assert event["type"] == "session.created" and event["session"]["type"] == "realtime"
    button.press("Enter")  # keyboard collapses it again
    assert pre.is_hidden()

    wait_for_heard_latency(page, 1)
    turn = timeline_row(page, 1)
    assert turn["Input"] == "voice" and turn["Speech started"] == "+0 ms", turn
    assert re.fullmatch(r"\+\d+ ms", turn["Speech stopped"]), turn
    assert re.fullmatch(r"\+\d+ ms", turn["First audio"]), turn
    assert turn["Done"].startswith("+") and "completed" in turn["Done"], turn
    latency, source = turn["End of speech → first audio"].split("\n")
    assert source == "mic → heard", turn  # measured from both audio tracks, not events
    assert 0 < int(latency.removesuffix(" ms")) < 10_000, turn

    log_text = page.evaluate("rtgate.logText()")
    assert API_KEY not in log_text and "ek_" not in log_text

    shot = screenshot(page, page, tmp_path / "playground.png", full_page=True)
    assert shot["width"] == VIEWPORT["width"] and shot["height"] >= VIEWPORT["height"], shot
    assert shot["ink"] > 0.03 and shot["colours"] > 20, shot
    assert page.eval_on_selector(".table-wrap", "el => el.scrollWidth <= el.clientWidth"), \
        "the timeline table is wider than its column"
    bar = screenshot(page, page.locator("#turns"), tmp_path / "timeline.png",
                     (SPEECH, WAIT, ANSWER))
    assert all(hits > 20 for hits in bar["hits"]), bar  # speaking, waiting, answer segments


def mint_ephemeral_key(server: ServerHandle) -> str:
    """An ek_ key bound to a session with get_weather and no turn detection."""
    session = {"type": "realtime", "model": "gpt-realtime", "tools": [WEATHER_TOOL],
               "tool_choice": "auto", "audio": {"input": {"turn_detection": None}}}
    response = httpx.post(f"{server.http_url}/v1/realtime/client_secrets",
                          headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"session": session}, timeout=10)
    assert response.status_code == 200, response.text
    key: str = response.json()["value"]
    assert key.startswith("ek_")
    return key


def test_typed_question_tool_call_and_errors_with_an_ephemeral_key(
    server: ServerHandle, browser_page: Any, tmp_path: Path
) -> None:
    """With a pasted ephemeral key: a typed message sends conversation.item.create and
    response.create; the model's function call shows its arguments, the output typed in
    the page is sent and shown, and the answer's turn gets a first-audio figure. A bad
    session.update (event box) and an unknown event (console) each show an error row right
    in the log, marking the client event it names; an MCP call (fed to the page's handler,
    as rtgate calls no MCP servers) shows its arguments and output."""
    page = browser_page
    key = mint_ephemeral_key(server)
    page.goto(server.http_url + "/")
    page.get_by_label("Use an ephemeral key I already have").check()
    assert page.get_by_label("API key", exact=True).is_disabled()
    page.get_by_label("Ephemeral key", exact=True).fill(key)
    page.get_by_label("Push to talk").check()  # the microphone stays muted
    page.get_by_role("button", name="Connect", exact=True).click()
    page.get_by_role("status").get_by_text("connected: listening").wait_for(timeout=20_000)
    assert "POST /v1/realtime/client_secrets" not in log_types(page, "page")

    page.get_by_label("Message").fill("What is the weather in Paris?")
    page.get_by_label("Message").press("Enter")
    tool = page.get_by_label("function call get_weather")
    tool.wait_for(timeout=20_000)
    assert json.loads(tool.locator("dd pre").nth(2).inner_text()) == {"city": "Paris"}
    assert log_types(page, "client")[:2] == ["conversation.item.create", "response.create"]
    tool.get_by_label("Output for get_weather").fill('{"temperature_c": 21}')
    tool.get_by_role("button", name="Send output").click()
    page.locator("#transcript").get_by_text(f"Assistant: {ASSISTANT_SAYS}").wait_for(timeout=20_000)
    tool.locator("dd pre", has_text="temperature_c").wait_for(timeout=5_000)
    wait_for_heard_latency(page, 2)
    asked, answered = timeline_row(page, 1), timeline_row(page, 2)
    assert asked["Input"] == "text" and "function call" in asked["Done"], asked
    assert asked["End of speech → first audio"] == "no audio", asked
    assert answered["Input"] == "tool output", answered
    assert answered["End of speech → first audio"].endswith("sent → heard"), answered

    page.get_by_text("Send a client event (JSON)").click()
    page.get_by_label("Client event").fill(json.dumps(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["smell"]}}))
    page.get_by_role("button", name="Send event").click()
    errors = page.locator("#log li.error.server")
    errors.first.wait_for(timeout=10_000)
    cause = page.locator("#log li.error.client")
    assert cause.locator(".type").inner_text() == "session.update"
    assert cause.locator(".summary").inner_text().startswith("→ ")
    assert errors.first.locator("pre").is_visible()  # the error's JSON is open where it happened
    assert json.loads(errors.first.locator("pre").inner_text())["error"]["event_id"]
    assert page.locator("#transcript .problem").count() == 1

    page.evaluate("rtgate.send({type: 'no.such.event'})")
    page.wait_for_function("document.querySelectorAll('#log li.error.server').length === 2")

    page.evaluate("""rtgate.handle({type: "response.output_item.done", item: {
        type: "mcp_call", id: "mcp_1", server_label: "docs", name: "search",
        arguments: '{"q": "rtgate"}', output: "3 results"}})""")
    mcp = page.get_by_label("MCP call docs · search")
    assert json.loads(mcp.locator("dd pre").nth(2).inner_text()) == {"q": "rtgate"}
    assert mcp.locator("dd pre").nth(3).inner_text() == "3 results"

    assert key not in page.evaluate("rtgate.logText()")
    error_row = screenshot(page, errors.first, tmp_path / "error-row.png", (ERROR_RED,))
    assert error_row["hits"][0] > 50, error_row  # the red border is drawn
    shot = screenshot(page, page, tmp_path / "playground-tools.png", full_page=True)
    assert shot["width"] == VIEWPORT["width"] and shot["height"] >= VIEWPORT["height"], shot
    assert shot["ink"] > 0.03 and shot["colours"] > 20, shot
    page.get_by_role("button", name="Disconnect").click()
    page.get_by_role("status").get_by_text("idle").wait_for(timeout=5_000)
