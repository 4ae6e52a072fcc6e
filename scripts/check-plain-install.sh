#!/usr/bin/env bash
# CI: install rtgate exactly as the README says (scripts/setup.sh, no test extras) into a
# fresh virtualenv in a temporary directory and run each CLI command from it, so that a
# runtime import the test tools happen to provide (issue 15: pathspec came in with mypy)
# fails here instead of on a user's machine.
#
# Asserts: `rtgate --help`, `rtgate serve --help`, `rtgate migrate probe --help` exit 0;
# `rtgate migrate check .` in a git repository with a .gitignore exits 0 when it is clean
# and 1 when it holds Preview code (never 3, the internal-error status); no test-only
# package (the [test] extras) is importable in that venv.
#
# Then the base install (`pip install .`, no extras: the relay-only and migrate-only
# face) in a second venv: the same migrate checks pass; no package of an extra (speech,
# webrtc, sip, mcp, tracing, cluster, migrate) is importable; `rtgate serve` with the
# default pipeline, `--sip-port`, `--redis-url` and `migrate check --fix` exit 2 with one
# line naming the extra (no traceback); and two `rtgate serve --pipeline builtin` of the
# base install, a gateway relaying to an echo upstream, carry a text turn from the
# official SDK (scripts/check_base_relay.py, run by .venv's Python, which has the SDK).
# Usage: scripts/check-plain-install.sh [--keep]   (--keep leaves the temporary dir)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/rtgate-plain.XXXXXX")"
[[ "${1:-}" == "--keep" ]] || trap 'rm -rf "$TMP"' EXIT
VENV="$TMP/venv"
if ! RTGATE_VENV="$VENV" scripts/setup.sh >"$TMP/setup.log" 2>&1; then
    tail -n 40 "$TMP/setup.log"
    echo "plain install: FAIL scripts/setup.sh (no --test) did not install"
    exit 1
fi
RT="$VENV/bin/rtgate"
fail=0

expect() {  # expect "ALLOWED STATUSES" DESCRIPTION COMMAND...
    local allowed="$1" what="$2"; shift 2
    local rc=0
    "$@" >"$TMP/out" 2>&1 || rc=$?
    if [[ " $allowed " == *" $rc "* ]]; then
        echo "plain install: ok   $what (exit $rc)"
    else
        echo "plain install: FAIL $what: exit $rc, expected one of: $allowed"
        tail -n 20 "$TMP/out"
        fail=1
    fi
}

expect "0" "rtgate --help" "$RT" --help
expect "0" "rtgate serve --help" "$RT" serve --help
expect "0" "rtgate migrate probe --help" "$RT" migrate probe --help
expect "0" "rtgate migrate check --help" "$RT" migrate check --help

# Two small git repositories with a .gitignore, like every real one: one GA-clean, one
# with a Preview event name. A crash (exit 3, or 1 from a traceback) must not pass for
# "findings": the clean one must exit 0 and the Preview one exactly 1 with a finding.
for kind in clean preview; do
    repo="$TMP/$kind"
    mkdir -p "$repo/node_modules/openai"
    printf 'node_modules\n*.log\n' >"$repo/.gitignore"
    if [[ $kind == clean ]]; then
        printf 'EVENT = "response.output_audio.delta"\n' >"$repo/app.py"
    else
        printf 'EVENT = "response.audio.delta"\n' >"$repo/app.py"
    fi
    # Ignored by .gitignore: must not be read (it would be a finding in either repo).
    printf 'x = "response.audio_transcript.delta"\n' >"$repo/node_modules/openai/index.js"
    git -C "$repo" init -q
done
expect "0" "rtgate migrate check . (clean git repo)" \
    bash -c 'cd "$1" && "$2" migrate check . --no-progress' _ "$TMP/clean" "$RT"
expect "1" "rtgate migrate check . (Preview git repo)" \
    bash -c 'cd "$1" && "$2" migrate check . --no-progress --format json' _ "$TMP/preview" "$RT"
if ! grep -q 'app\.py' "$TMP/out" || grep -q 'node_modules' "$TMP/out"; then
    echo "plain install: FAIL the Preview repo's report lacks app.py's finding or reads node_modules"
    tail -n 20 "$TMP/out"
    fail=1
fi

# The [test] extras must not be importable: the plain install is what users get.
# (jsonschema is left out: it is a test extra and also a runtime dependency of mcp.)
for mod in pytest pytest_asyncio hypothesis mypy ruff playwright yamllint kubernetes_validate \
        check_jsonschema deptry importlinter grimp openai; do
    if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)"; then
        echo "plain install: FAIL test-only package '$mod' is importable in the plain venv"
        fail=1
    fi
done

extras_found() {  # extras_found VENV all|none: every module of every extra is (not) found there
    "$1/bin/python" - "$2" <<'PY'
import importlib.util, sys
from rtgate.extras import EXTRAS
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
want = sys.argv[1] == "all"
wrong = sorted({m for modules in EXTRAS.values() for m in modules if found(m) != want})
if wrong:
    print(f"extras: FAIL {'missing from' if want else 'importable in'} the venv: {', '.join(wrong)}")
else:
    print(f"extras: ok   {'every' if want else 'no'} module of an extra is importable")
sys.exit(1 if wrong else 0)
PY
}
# scripts/setup.sh installs rtgate[all]: the full embedded default, every extra.
extras_found "$VENV" all || fail=1
[[ $fail == 0 ]] && echo "plain install: every command ran from a venv without test extras"

# ---- the base install: `pip install .`, no extras
BASE="$TMP/base"
"${PYTHON:-python3}" -m venv "$BASE"
if ! "$BASE/bin/python" -m pip install -q . >"$TMP/base.log" 2>&1; then
    tail -n 40 "$TMP/base.log"
    echo "base install: FAIL pip install . did not install"
    exit 1
fi
RT="$BASE/bin/rtgate"
expect "0" "base: rtgate migrate check . (clean git repo)" \
    bash -c 'cd "$1" && "$2" migrate check . --no-progress' _ "$TMP/clean" "$RT"
expect "1" "base: rtgate migrate check . (Preview git repo)" \
    bash -c 'cd "$1" && "$2" migrate check . --no-progress --format json' _ "$TMP/preview" "$RT"

# Every module an extra provides (src/rtgate/extras.py) must be missing from the base.
extras_found "$BASE" none || fail=1

expect_extra() {  # expect_extra EXTRA DESCRIPTION COMMAND...: exit 2, one line naming EXTRA
    local extra="$1"
    expect "2" "$2" "${@:3}"
    if ! grep -qF "pip install 'rtgate[$extra]'" "$TMP/out" || grep -q Traceback "$TMP/out"; then
        echo "base install: FAIL $2: no clear message naming the $extra extra"
        tail -n 20 "$TMP/out"
        fail=1
    fi
}
PORT=$("$BASE/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_extra speech "base: rtgate serve (default pipeline)" timeout 60 "$RT" serve --port "$PORT"
expect_extra sip "base: rtgate serve --sip-port" timeout 60 "$RT" serve --pipeline builtin --port "$PORT" --sip-port "$PORT"
expect_extra cluster "base: rtgate serve --redis-url" \
    timeout 60 "$RT" serve --pipeline builtin --port "$PORT" --redis-url redis://127.0.0.1:1
expect_extra migrate "base: rtgate migrate check --fix" \
    bash -c 'cd "$1" && "$2" migrate check . --no-progress --fix' _ "$TMP/preview" "$RT"

if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import openai' 2>/dev/null; then
    expect "0" "base: a relay of two rtgate serve --pipeline builtin carries a text turn" \
        .venv/bin/python scripts/check_base_relay.py "$RT"
else
    echo "base install: FAIL the relay check needs .venv with the test extras (scripts/setup.sh --test)"
    fail=1
fi
[[ $fail == 0 ]] && echo "base install: the relay and migrate faces run without any extra"
exit $fail
