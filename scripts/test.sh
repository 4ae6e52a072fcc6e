#!/usr/bin/env bash
# Set up (idempotent) and run every check: ruff, mypy, deptry, import-linter, the plain install's CLI, pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --test
export HF_HUB_OFFLINE=1
echo "== ruff"; .venv/bin/ruff check src tests benchmarks
echo "== mypy"; .venv/bin/mypy
echo "== deptry"; .venv/bin/deptry src  # declared against imported dependencies ([tool.deptry])
echo "== import-linter"; .venv/bin/lint-imports  # layers, no cycles ([tool.importlinter]; docs/architecture.md, Layers)
echo "== plain install"; scripts/check-plain-install.sh  # each CLI command from the README's install, no test extras
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
