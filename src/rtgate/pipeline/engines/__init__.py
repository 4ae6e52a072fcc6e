"""Speech pipeline engines.

Embedded default (models ship in wheels): :mod:`.whisper` (faster-whisper STT),
:mod:`.llama` (llama.cpp LLM), :mod:`.espeak` (espeak-ng TTS). Optional: :mod:`.piper`
(Piper TTS). Network: :mod:`.openai_compat`. Construction from configuration:
:mod:`.registry`. Modules are imported lazily so that importing this package is cheap.
"""
