"""The input audio buffer on the session's audio clock (``input_audio_buffer.*``,
docs/protocol.md, Client events).

Audio is kept as sent (PCM16 24 kHz, or G.711 at 8 kHz). ``start_ms`` is the clock time
of the first buffered byte; ``end_ms`` is the clock time of everything appended so far.
Commits take a time range; audio before it is dropped, audio after it stays.
"""

from __future__ import annotations

from ..audio import AudioFormatType, bytes_per_ms


class InputAudioBuffer:
    def __init__(self, audio_format: AudioFormatType = "audio/pcm", *, max_ms: float) -> None:
        self._data = bytearray()
        self.start_ms = 0.0
        self._format: AudioFormatType = audio_format
        self._max_ms = max_ms
        self._max_bytes = int(max_ms * bytes_per_ms(audio_format))
        """Buffered bytes below which no overflow check is needed (floor of ``max_ms``)."""

    @property
    def format(self) -> AudioFormatType:
        return self._format

    def set_format(self, audio_format: AudioFormatType) -> None:
        """Change the format; buffered audio of the old format is dropped."""
        if audio_format != self._format:
            self.start_ms = self.end_ms
            self._data.clear()
            self._format = audio_format
            self._max_bytes = int(self._max_ms * bytes_per_ms(audio_format))

    @property
    def _sample_bytes(self) -> int:
        return 2 if self._format == "audio/pcm" else 1

    @property
    def duration_ms(self) -> float:
        return len(self._data) / bytes_per_ms(self._format)

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms

    def append(self, data: bytes) -> None:
        self._data += data
        # A length check first: the duration (two divisions) only matters near the limit.
        if len(self._data) > self._max_bytes:
            overflow = self.duration_ms - self._max_ms
            if overflow > 0:
                self._drop_front(self._offset(overflow))

    def clear(self) -> None:
        self.start_ms = self.end_ms
        self._data.clear()

    def take_all(self) -> bytes:
        data = bytes(self._data)
        self.clear()
        return data

    def peek(self, from_ms: float, to_ms: float | None = None) -> bytes:
        """A copy of the audio in [from_ms, to_ms) (to the end by default); nothing is removed."""
        begin = self._offset(max(0.0, from_ms - self.start_ms))
        end = len(self._data) if to_ms is None else self._offset(max(0.0, to_ms - self.start_ms))
        return bytes(self._data[begin:end])

    def take_range(self, from_ms: float, to_ms: float) -> bytes:
        """Remove and return audio in [from_ms, to_ms); earlier audio is discarded."""
        begin = self._offset(max(0.0, from_ms - self.start_ms))
        end = self._offset(max(0.0, to_ms - self.start_ms))
        chunk = bytes(self._data[begin:end])
        self._drop_front(end)
        return chunk

    def _offset(self, ms: float) -> int:
        raw = min(len(self._data), int(ms * bytes_per_ms(self._format)))
        return raw - raw % self._sample_bytes

    def _drop_front(self, nbytes: int) -> None:
        del self._data[:nbytes]
        self.start_ms += nbytes / bytes_per_ms(self._format)
