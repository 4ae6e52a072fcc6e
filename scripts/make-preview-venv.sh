#!/usr/bin/env bash
# Create .venv-preview/: an isolated environment holding an openai 1.x release whose
# `openai.types.beta.realtime` models describe the Preview (beta) Realtime protocol.
# tests/preview/ runs tests/preview/validate_preview.py inside it to check that the
# Preview bridge's output validates against the Preview SDK models; tests/preview_e2e/ runs
# a `client.beta.realtime` client in it (the [realtime] extra brings websockets).
#
# Why 1.107.0 and not 1.75.0: 1.107's beta types are the last revision of the Preview
# models (SPEC Appendix A). 1.75's are older and stricter than the Preview wire ever was:
# RealtimeResponse.status lacks "in_progress" (every response.created has it), item content
# lacks "audio", item status lacks "in_progress", and output_audio_buffer.* are missing.
# Override with OPENAI_PREVIEW_VERSION=... to check another release.
#
# Idempotent: re-running with the venv already in place and the pinned version installed
# does nothing. CI runs it before pytest.
#
# usage: scripts/make-preview-venv.sh [PYTHON]    (default: python3)
set -euo pipefail

OPENAI_PREVIEW_VERSION="${OPENAI_PREVIEW_VERSION:-1.107.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-preview"
PY="${1:-python3}"

if [[ -x "$VENV/bin/python" ]] && \
   "$VENV/bin/python" -c "import sys, openai, pydantic, websockets; sys.exit(openai.__version__ != '$OPENAI_PREVIEW_VERSION')" 2>/dev/null; then
    echo "make-preview-venv: $VENV already has openai $OPENAI_PREVIEW_VERSION"
    exit 0
fi

echo "make-preview-venv: creating $VENV (openai==$OPENAI_PREVIEW_VERSION)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openai[realtime]==$OPENAI_PREVIEW_VERSION" "pydantic>=2,<3"
"$VENV/bin/python" -c "import openai; print('make-preview-venv: ready, openai', openai.__version__)"
