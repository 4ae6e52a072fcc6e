"""How ``semantic_vad``'s eagerness mapping was chosen: Smart Turn's verdicts, offline.

    python benchmarks/calibrate_turns.py [--voices en-us,en-gb,en+f3,en+m3]

No server: 10 questions (not the benchmark's), each spoken whole and with a 600 ms SSML
``<break>`` after a function word, in four espeak-ng voices (80 clips), go through the real
Silero VAD and the core's :class:`~rtgate.core.turn_detection.TurnDetector`; every query
the detector makes (one per pause of ``pause_ms``) is answered by Smart Turn v3.2. For
each ``pause_ms``, threshold and longest wait, a whole question's turn ends at the first
query whose verdict reaches the threshold plus 50 ms of model time, or at the longest wait;
a paused one is *cut off* if its turn ends before the second half starts. Prints the
median and p90 of end of voice → turn end over whole questions, and the share cut off.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from rtgate.core.turn_detection import HYSTERESIS, TurnDetector, TurnEndParams, TurnQuery, VadParams
from rtgate.pipeline.turn_model import SmartTurn, model_path
from rtgate.pipeline.vad_silero import SileroVAD

RATE = 16_000
FRAME_MS = 32
MODEL_MS = 50
PAUSES = (32, 64, 96, 128)
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)
WAITS = (500, 700, 1000)
PHRASES = [
    ("Where can I find a", "good coffee shop near here?"),
    ("My daughter wants to know how", "rainbows are made."),
    ("Is it going to rain this weekend in", "Paris?"),
    ("I need help writing an email to my", "landlord about the heating."),
    ("What time does the", "museum open on Sundays?"),
    ("Can you explain how vaccines protect us from", "disease?"),
    ("How many cups of", "flour do I need for a loaf of bread?"),
    ("What is the difference between a", "virus and a bacterium?"),
    ("Give me three ideas for a", "birthday present."),
    ("Who wrote the novel about", "a whale called Moby Dick?"),
]


def say(ssml: str, voice: str) -> np.ndarray:
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-m", "-v", voice, "-s", "160", "-w", str(path), ssml],
                       check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    x = np.asarray(soxr.resample(x, rate, RATE), dtype=np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0] : loud[-1] + 1]
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def resume_ms(x: np.ndarray, lead_ms: float) -> float:
    change = np.diff(np.concatenate([[0], (np.abs(x) <= 0.01).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    return lead_ms + ends[np.argmax(ends - starts)] * 1000 / RATE


def probabilities(vad: SileroVAD, signal: np.ndarray) -> np.ndarray:
    stream = vad.new_stream()
    frames = signal[: len(signal) // 512 * 512].reshape(-1, 512)
    return np.array([vad.infer([stream], f[None])[0] for f in frames])


def queries(probs: np.ndarray, signal: np.ndarray, pause: int, model: SmartTurn) -> list[tuple[float, float]]:
    """(audio position of the verdict's frame, P(complete)) for every query over the clip."""
    detector = TurnDetector(VadParams(0.5, 300, 10**6, TurnEndParams(pause, 1.0, 10**6)))
    out = []
    for i, p in enumerate(probs):
        t = detector.feed(float(p), i * FRAME_MS, (i + 1) * FRAME_MS, 0)
        if isinstance(t, TurnQuery):
            clip = signal[t.audio_start_ms * RATE // 1000 : t.audio_end_ms * RATE // 1000]
            out.append((float(t.audio_end_ms), float(model.predict([clip])[0])))
    return out


def silence_end(probs: np.ndarray, wait: int) -> float:
    speaking, last = False, 0
    for i, p in enumerate(probs):
        end = (i + 1) * FRAME_MS
        if not speaking:
            speaking, last = p >= 0.5, end
        elif p >= 0.5 - HYSTERESIS:
            last = end
        elif end - last >= wait:
            return end
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", default="en-us,en-gb,en+f3,en+m3")
    args = parser.parse_args(argv)
    path = model_path()
    if path is None:
        print("pipecat-ai is not installed: pip install --no-deps 'pipecat-ai>=1.14'", file=sys.stderr)
        return 1
    vad, model = SileroVAD(), SmartTurn(path)
    lead_ms = 500
    clips = []
    for first, second in PHRASES:
        for voice in args.voices.split(","):
            for paused in (False, True):
                sep = ' <break time="600ms"/> ' if paused else " "
                x = say(f"<speak>{first}{sep}{second}</speak>", voice)
                signal = np.concatenate([np.zeros(RATE * lead_ms // 1000, np.float32), x,
                                         np.zeros(2 * RATE, np.float32)])
                probs = probabilities(vad, signal)
                clips.append({
                    "paused": paused, "probs": probs,
                    "voice_end": lead_ms + len(x) * 1000 / RATE,
                    "resume": resume_ms(x, lead_ms) if paused else None,
                    "queries": {pause: queries(probs, signal, pause, model) for pause in PAUSES},
                })
        print(f"{first} …", file=sys.stderr, flush=True)
    print("| pause_ms | threshold | longest wait | whole: turn end − end of voice p50 / p90 (ms) | "
          "whole ended by the model | paused: cut off |")
    print("|---|---|---|---|---|---|")
    for pause in PAUSES:
        for threshold in THRESHOLDS:
            for wait in WAITS:
                late, by_model, cut, paused = [], 0, 0, 0
                for c in clips:
                    sil = silence_end(c["probs"], wait)
                    hits = [pos + MODEL_MS for pos, p in c["queries"][pause] if p >= threshold]
                    end = min([sil, *hits])
                    if c["paused"]:
                        paused += 1
                        cut += end < c["resume"]
                    else:
                        late.append(end - c["voice_end"])
                        by_model += bool(hits) and min(hits) < sil
                print(f"| {pause} | {threshold} | {wait} | {np.median(late):.0f} / "
                      f"{np.percentile(late, 90):.0f} | {by_model}/{len(late)} | "
                      f"{cut}/{paused} ({100 * cut / paused:.0f} %) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
