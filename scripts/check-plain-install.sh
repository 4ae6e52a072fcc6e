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
        check_jsonschema deptry openai; do
    if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)"; then
        echo "plain install: FAIL test-only package '$mod' is importable in the plain venv"
        fail=1
    fi
done
[[ $fail == 0 ]] && echo "plain install: every command ran from a venv without test extras"
exit $fail
