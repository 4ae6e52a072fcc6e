"""End of caller speech → first RTP packet of the answer at a SIP phone, against WebSocket.

    python benchmarks/bench_sip.py [--rounds N] [--quick] [--stack fake|default]

One rtgate (``running_server``) with its SIP endpoint on loopback, Silero VAD with
``server_vad`` defaults, and either fake STT/LLM/TTS (``--stack fake``, the default) or the
embedded default stack (``--stack default``). A webhook receiver verifies each
``realtime.call.incoming`` with the official SDK and accepts the call with
``client.realtime.calls.accept`` (session: G.711 µ-law in and out, so the phone's audio
reaches the session without conversion). Each of five fixed utterances (espeak-ng speech)
goes, in a fresh call and in a fresh WebSocket session, alternating:

* **SIP**: the phone (``rtgate.testing.sip_peer``: aiosipua UAC, aiortp paced RTP, PCMU)
  sends 500 ms of silence, the speech and 1.5 s of silence as 20 ms RTP packets; *first
  audio* is the arrival of the first answer packet with sound in it (RMS above 300), after
  the phone's own jitter buffer (1 packet).
* **WebSocket**: as in ``bench_webrtc.py`` (first ``response.output_audio.delta``).

**End of speech** is the send time of the packet holding the last voiced sample (> -40
dBFS) plus that sample's offset in it. Medians and p90 over utterances × rounds; the first
turn of each transport is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import sys
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_webrtc import SESSION, UTTERANCES, p90, profiles_for, websocket_turn

SECRET = "whsec_" + base64.b64encode(b"rtgate-bench-sip-webhook-secret!").decode()
LEAD_MS = 500
TAIL_MS = 1500


async def sip_turn(handle: object, pcm: bytes) -> float:
    """Seconds from end of speech to the first answer packet with sound, in a fresh call."""
    from rtgate.testing.audio import silence_pcm
    from rtgate.testing.sip_peer import SipPeer

    settings = handle.settings  # type: ignore[attr-defined]
    peer = SipPeer(("127.0.0.1", settings.sip.port))
    await peer.start()
    try:
        peer.invite()
        await peer.answered()
        await peer.say(silence_pcm(LEAD_MS), then_silence_ms=0)
        spoken_end = await peer.say(pcm, then_silence_ms=TAIL_MS)
        heard = await peer.first_sound(spoken_end)
        peer.hangup()
        return heard - spoken_end
    finally:
        await peer.close()


async def run(rounds: int, stack: str) -> str:
    from rtgate.server.settings import Settings
    from rtgate.testing.audio import speech_pcm
    from rtgate.testing.server import running_server
    from rtgate.testing.sip_peer import free_sip_port
    from rtgate.testing.webhook_receiver import Receiver, running_receiver

    audio = [await speech_pcm(text) for text in UTTERANCES]
    session = {k: v for k, v in SESSION.items() if k != "type"}
    session["audio"] = {"input": {"format": {"type": "audio/pcmu"}},
                        "output": {"format": {"type": "audio/pcmu"}}}
    receiver = Receiver(SECRET, "sk-bench", session=session)
    ws: list[float] = []
    sip: list[float] = []
    with running_receiver(receiver) as url:
        settings = Settings(api_keys=("sk-bench",), sip_port=free_sip_port(), webhook_urls=(url,),
                            webhook_secret=SECRET, overload_late_s=0)
        with running_server(settings, profiles=profiles_for(stack)) as handle:
            receiver.base_url = handle.base_url
            await websocket_turn(handle.base_url, audio[0])  # warm-up
            await sip_turn(handle, audio[0])
            for _ in range(rounds):
                for pcm in audio:
                    ws.append(await websocket_turn(handle.base_url, pcm))
                    sip.append(await sip_turn(handle, pcm))
                    print(f"  websocket {ws[-1] * 1000:6.0f} ms   sip {sip[-1] * 1000:6.0f} ms",
                          file=sys.stderr)
    rows = [("WebSocket: first `response.output_audio.delta`", ws),
            ("SIP: first answer RTP packet with sound at the phone", sip)]
    return "\n".join([
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
        f"stack `{stack}`; {len(UTTERANCES)} utterances × {rounds} round(s) per transport.",
        "",
        "| end of speech → | median | p90 |",
        "|---|---|---|",
        *(f"| {name} | {statistics.median(v) * 1000:.0f} ms | {p90(v) * 1000:.0f} ms |" for name, v in rows),
        "",
        f"SIP − WebSocket (median of per-utterance differences): "
        f"{statistics.median(s - w for s, w in zip(sip, ws, strict=True)) * 1000:+.0f} ms.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the utterances (default 3)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--stack", choices=["fake", "default"], default="fake",
                        help="fake STT/LLM/TTS (default) or the embedded default speech stack")
    args = parser.parse_args(argv)
    print(asyncio.run(run(1 if args.quick else args.rounds, args.stack)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
