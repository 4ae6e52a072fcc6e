"""Does a denoiser help rtgate's turn detection on noisy speech? (``noise_reduction``)

    pip install pyrnnoise webrtc-noise-gain     # the candidates; not rtgate dependencies
    python benchmarks/bench_denoise.py [--questions 12] [--snr 20,10,5,0] [--json PATH]

The full run took 80 s on the shared 2-CPU VM (one core); results in docs/benchmarks.md.

Offline, CPU only, no server: the audio goes through what the server's VAD path does
(24 kHz → 16 kHz, 512-sample frames, Silero VAD with the server's graph, the
``server_vad`` defaults of ``core/turn_detection.py``: threshold 0.5, prefix 300 ms,
silence 200 ms), with or without a denoiser in front.

**Speech.** The questions and voices of ``bench_turns.py`` (espeak-ng, trimmed to the
voiced part, peak 0.5), each asked in one breath. A clip is 2 s of noise, the question,
then 2 s of noise; each clip is a fresh stream (new VAD and denoiser state).

**Noise** (generated, fixed seed), scaled to an SNR against the speech's mean power:
``white`` (Gaussian), ``pink`` (1/f, shaped in the frequency domain) and ``babble`` (four
other questions in other voices, summed, looped from random offsets). ``clean`` has
digital silence around the speech.

**Denoisers** (PyPI wheels, no model download): ``none``; ``rnnoise`` (``pyrnnoise``: RNNoise
on 480-sample frames at 48 kHz, 24 kHz resampled up and the result down to 16 kHz);
``webrtc`` (``webrtc-noise-gain``: WebRTC noise suppression level 2 (high), no gain, on
10 ms frames at 16 kHz).

**Per condition:** ``turns`` — clips whose speech is covered by exactly one turn (start
before the voice ends, stop after it starts); ``missed`` — clips with no turn over the
speech; ``split`` — clips with more than one; ``early`` — clips whose turn over the speech
started in the noise before it (more than the 300 ms prefix + 100 ms early); ``false`` — speech starts whose turn lies
wholly in a noise-only stretch (per clip: 4 s of noise); ``eot`` — the median and worst
``audio_end_ms`` of the turn that ends the speech minus the end of the voice (the
200 ms silence window included; negative: cut before the end); ``cpu`` — the denoiser's CPU
milliseconds per second of audio (process time, resampling included).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import soxr

from bench_turns import QUESTIONS, VOICED, VOICES, espeak
from rtgate.core.turn_detection import SpeechStarted, SpeechStopped, TurnDetector, VadParams
from rtgate.pipeline.vad_silero import FRAME_SAMPLES, SileroVAD

RATE = 24_000
VAD_RATE = 16_000
FRAME_MS = FRAME_SAMPLES * 1000 / VAD_RATE  # 32 ms
NOISE_MS = 2000
EARLY_MS = 100
"""A turn over the speech that starts more than this before the voice (beyond the prefix
padding) was started by the noise."""
SERVER_VAD = VadParams(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=200)

Denoiser = Callable[[np.ndarray], np.ndarray]
"""24 kHz float32 in → 16 kHz float32 out (a fresh state per call: one clip, one stream)."""


def plain(audio: np.ndarray) -> np.ndarray:
    return np.asarray(soxr.resample(audio, RATE, VAD_RATE), dtype=np.float32)


def rnnoise(audio: np.ndarray) -> np.ndarray:
    from pyrnnoise import rnnoise as rn

    up = np.asarray(soxr.resample(audio, RATE, 48_000), dtype=np.float32)
    up = np.pad(up, (0, -len(up) % rn.FRAME_SIZE))
    state = rn.create()
    try:
        out = np.concatenate([
            rn.process_mono_frame(state, frame)[0]
            for frame in (up.clip(-1, 1) * 32767).astype(np.int16).reshape(-1, rn.FRAME_SIZE)
        ]).astype(np.float32) / 32768
    finally:
        rn.destroy(state)
    return np.asarray(soxr.resample(out, 48_000, VAD_RATE), dtype=np.float32)


def webrtc(audio: np.ndarray) -> np.ndarray:
    from webrtc_noise_gain import AudioProcessor

    down = plain(audio)
    down = np.pad(down, (0, -len(down) % 160))
    processor = AudioProcessor(0, 2)
    pcm = (down.clip(-1, 1) * 32767).astype("<i2").reshape(-1, 160)
    out = b"".join(processor.Process10ms(frame.tobytes()).audio for frame in pcm)
    return np.frombuffer(out, dtype="<i2").astype(np.float32) / 32768


DENOISERS: dict[str, Denoiser] = {"none": plain, "rnnoise": rnnoise, "webrtc": webrtc}


# ---------------------------------------------------------------------- audio


def question(index: int) -> np.ndarray:
    first, second = QUESTIONS[index % len(QUESTIONS)]
    voice, speed = VOICES[index % len(VOICES)]
    audio = espeak(f"<speak>{first} {second}</speak>", voice, speed)
    loud = np.flatnonzero(np.abs(audio) > VOICED)
    audio = audio[loud[0] : loud[-1] + 1]
    return np.asarray(0.5 * audio / np.abs(audio).max(), dtype=np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    out = np.fft.irfft(spectrum / np.sqrt(f), n)
    return np.asarray(out / out.std(), dtype=np.float32)


def babble(n: int, index: int, speech: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    others = [s for i, s in enumerate(speech) if i != index]
    out = np.zeros(n, dtype=np.float32)
    for k in rng.choice(len(others), size=min(4, len(others)), replace=False):
        talker = np.concatenate([others[k], np.zeros(RATE // 4, dtype=np.float32)])
        out += np.roll(np.resize(talker, n), int(rng.integers(len(talker))))
    return np.asarray(out / out.std(), dtype=np.float32)


def noise(kind: str, n: int, index: int, speech: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``kind``."""
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "pink":
        return pink(n, rng)
    return babble(n, index, speech, rng)


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray
    voice_start_ms: float
    voice_end_ms: float


def mix(speech: list[np.ndarray], index: int, kind: str, snr_db: float | None, seed: int) -> Clip:
    voice = speech[index]
    pad = RATE * NOISE_MS // 1000
    signal = np.concatenate([np.zeros(pad, np.float32), voice, np.zeros(pad, np.float32)])
    if snr_db is not None:
        rng = np.random.default_rng(seed)
        power = float(np.mean(voice[np.abs(voice) > VOICED] ** 2))
        gain = np.sqrt(power / 10 ** (snr_db / 10))
        signal = signal + gain * noise(kind, len(signal), index, speech, rng)
    start = NOISE_MS
    return Clip(signal.astype(np.float32), start, start + len(voice) * 1000 / RATE)


# ---------------------------------------------------------------------- detection


@dataclass
class Outcome:
    clips: int = 0
    turns: int = 0
    missed: int = 0
    split: int = 0
    early: int = 0
    false: int = 0
    eot_ms: list[float] | None = None
    cpu_s: float = 0.0
    audio_s: float = 0.0


def detect(vad: SileroVAD, audio16: np.ndarray) -> list[tuple[float, float]]:
    """``server_vad`` turns ``(audio_start_ms, audio_end_ms)`` over one stream."""
    frames = np.pad(audio16, (0, -len(audio16) % FRAME_SAMPLES)).reshape(-1, FRAME_SAMPLES)
    probs = vad.infer_frames(vad.new_stream(), frames)
    detector = TurnDetector(SERVER_VAD)
    turns: list[tuple[float, float]] = []
    floor = 0.0
    start: float | None = None
    for k, p in enumerate(probs):
        event = detector.feed(float(p), k * FRAME_MS, (k + 1) * FRAME_MS, floor)
        if isinstance(event, SpeechStarted):
            start = event.audio_start_ms
        elif isinstance(event, SpeechStopped) and start is not None:
            turns.append((start, event.audio_end_ms))
            floor, start = event.audio_end_ms, None
    if start is not None:
        turns.append((start, len(probs) * FRAME_MS))
    return turns


def score(outcome: Outcome, clip: Clip, turns: list[tuple[float, float]]) -> None:
    # A turn's speech ends silence_duration_ms before its audio_end_ms.
    over = [t for t in turns if t[0] < clip.voice_end_ms and t[1] - SERVER_VAD.silence_duration_ms > clip.voice_start_ms]
    outcome.clips += 1
    outcome.false += len(turns) - len(over)
    if not over:
        outcome.missed += 1
        return
    if over[0][0] < clip.voice_start_ms - SERVER_VAD.prefix_padding_ms - EARLY_MS:
        outcome.early += 1
    if len(over) == 1:
        outcome.turns += 1
    else:
        outcome.split += 1
    assert outcome.eot_ms is not None
    outcome.eot_ms.append(over[-1][1] - clip.voice_end_ms)


def run(args: argparse.Namespace) -> dict[str, Any]:
    speech = [question(i) for i in range(args.questions)]
    vad = SileroVAD()
    conditions: list[tuple[str, float | None]] = [("clean", None)] + [
        (kind, snr) for kind in ("white", "pink", "babble") for snr in args.snr
    ]
    results: dict[str, Any] = {}
    for kind, snr in conditions:
        for name, denoise in DENOISERS.items():
            outcome = Outcome(eot_ms=[])
            for i in range(len(speech)):
                clip = mix(speech, i, kind, snr, seed=1000 * i + int(snr or 0))
                t0 = time.process_time()
                audio16 = denoise(clip.audio)
                outcome.cpu_s += time.process_time() - t0
                outcome.audio_s += len(clip.audio) / RATE
                score(outcome, clip, detect(vad, audio16))
            key = f"{kind}" if snr is None else f"{kind} {snr:g} dB"
            results.setdefault(key, {})[name] = outcome
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"## Denoiser before server_vad ({args.questions} questions, {NOISE_MS * 2 / 1000:g} s noise each;"
          f" {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, Python {sys.version.split()[0]})\n")
    print("| condition | denoiser | turns | missed | split | early | false starts | eot median / max ms | cpu ms per s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, row in results.items():
        for name, o in row.items():
            none_cpu = row["none"].cpu_s
            eot = (f"{statistics.median(o.eot_ms):.0f} / {max(o.eot_ms):.0f}" if o.eot_ms else "—")
            extra = (o.cpu_s - none_cpu) * 1000 / o.audio_s
            cpu = "—" if name == "none" else f"{extra:.1f}"
            print(f"| {key} | {name} | {o.turns}/{o.clips} | {o.missed} | {o.split} | {o.early} | {o.false} | {eot} | {cpu} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--snr", default="20,10,5,0", help="comma-separated SNRs in dB")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    args.snr = [float(s) for s in args.snr.split(",")]
    try:
        import pyrnnoise  # noqa: F401
        import webrtc_noise_gain  # noqa: F401
    except ImportError as e:
        sys.exit(f"{e.name} is not installed: pip install pyrnnoise webrtc-noise-gain")
    results = run(args)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {n: asdict(o) for n, o in row.items()} for k, row in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
