"""The playground in a real browser: Debian's Chromium, headless, with a WAV as microphone.

Chromium's fake media flags feed espeak-ng speech to ``getUserMedia``; the page mints an
ephemeral key, opens a WebRTC call, and must show the user's transcript and receive the
assistant's audio (inbound RTP counted by ``getStats``). A screenshot is kept under
``test-artifacts/browser/``. Installing Chromium is part of ``scripts/setup.sh --test``;
without it (or without the ``playwright`` package) these tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
USER_SAYS = "what is the weather"
ASSISTANT_SAYS = "It is sunny and warm today."

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
    settings = Settings(api_keys=("sk-browser",))
    profiles = fake_profiles(FakeLLM(ASSISTANT_SAYS), FakeTTS(ms_per_word=300), FakeSTT(USER_SAYS))
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
            profile, executable_path=CHROMIUM, headless=True, args=args,
            viewport={"width": 1000, "height": 1100},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
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


def test_spoken_question_shows_transcript_and_plays_answer_in_chromium(
    server: ServerHandle, browser_page: Any
) -> None:
    """Connect with the keyboard, speak (WAV microphone): the user's transcript appears in
    the live region, the assistant's transcript follows, and its audio arrives over RTP."""
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.http_url + "/")
    page.get_by_label("API key").fill("sk-browser")
    page.get_by_role("button", name="Connect", exact=True).focus()
    page.keyboard.press("Enter")
    transcript = page.locator("#transcript")
    try:
        transcript.get_by_text(f"You: {USER_SAYS}").wait_for(timeout=20_000)
        transcript.get_by_text(f"Assistant: {ASSISTANT_SAYS}").wait_for(timeout=20_000)
        page.wait_for_function(
            "async () => { const s = await (" + INBOUND_AUDIO + ")(); "
            "return s !== null && s.packets >= 50; }", timeout=20_000, polling=200)
        page.get_by_text("output_audio_buffer.stopped").first.wait_for(timeout=20_000)
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    stats = page.evaluate(INBOUND_AUDIO)
    assert stats["bytes"] > 2_000, stats
    assert stats["energy"] > 0, stats  # decoded audio was not silence
    assert page.get_attribute("#transcript", "aria-live") == "polite"
    assert not errors, errors
    assert page.get_by_role("status").inner_text().startswith("connected")
    (ARTIFACTS / "inbound-rtp.txt").write_text(f"{stats}\n")
    page.get_by_role("button", name="Disconnect").click()
    page.get_by_role("status").get_by_text("idle").wait_for(timeout=5_000)
    deadline = page.evaluate("Date.now()") + 10_000
    while live_peer_connections() and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(100)
    assert live_peer_connections() == 0, "the server kept the call after Disconnect"
