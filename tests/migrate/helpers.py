"""Shared helpers for the migration checker tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rtgate.migrate.cli import main
from rtgate.migrate.engine import scan_text
from rtgate.migrate.model import Finding, Lang

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
PREVIEW = CORPUS / "preview"
GA = CORPUS / "ga"
SARIF_SCHEMA = HERE / "sarif-schema-2.1.0.json"


def run_cli(*argv: str) -> tuple[int, str]:
    """Run ``rtgate migrate`` in-process; return (exit status, stdout)."""
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def run_json(*paths: str | Path, extra: tuple[str, ...] = ()) -> tuple[int, dict]:
    code, out = run_cli("check", *map(str, paths), "--format", "json", "--no-progress", *extra)
    return code, json.loads(out)


def rules(text: str, lang: Lang) -> list[str]:
    """Rule ids found in ``text``, in position order."""
    return [f.rule.id for f in scan_text(text, lang)]


def only(text: str, lang: Lang, rule_id: str) -> list[Finding]:
    return [f for f in scan_text(text, lang) if f.rule.id == rule_id]
