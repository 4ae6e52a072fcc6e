"""The corpus: every Preview-era program yields exactly its expected findings; GA-clean
programs yield none (issue 6, "Proof")."""

from __future__ import annotations

import json
import os

import pytest

from .helpers import CORPUS, GA, PREVIEW, run_cli, run_json

EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected_preview.json").read_text())


@pytest.fixture(scope="module")
def preview_report() -> dict:
    cwd = os.getcwd()
    os.chdir(PREVIEW)
    try:
        code, doc = run_json(".")
    finally:
        os.chdir(cwd)
    assert code == 1
    return doc


def _actual(doc: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in doc["findings"]:
        found.setdefault(f["path"], []).append(f"{f['line']}:{f['rule']}")
    return {k: sorted(v, key=lambda x: (int(x.split(":")[0]), x)) for k, v in found.items()}


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_preview_program_has_expected_findings(preview_report: dict, path: str) -> None:
    """Each Preview-era file yields exactly the rule ids and lines listed in expected."""
    assert _actual(preview_report).get(path) == EXPECTED[path]


def test_every_preview_file_is_expected(preview_report: dict) -> None:
    """No file produces findings that the expectations do not list."""
    assert set(_actual(preview_report)) == set(EXPECTED)


def test_expectations_cover_each_language_and_checklist_item(preview_report: dict) -> None:
    """The corpus exercises every checklist item and every language family."""
    checklist = {f["checklist"] for f in preview_report["findings"]}
    assert checklist == {
        "sdk",
        "endpoints",
        "beta-header",
        "events",
        "session",
        "content",
        "webrtc",
    }
    suffixes = {os.path.splitext(p)[1] or os.path.basename(p) for p in EXPECTED}
    assert {
        ".py",
        ".js",
        ".ts",
        ".html",
        ".cs",
        ".java",
        ".go",
        ".ipynb",
        ".yaml",
        ".env",
        ".txt",
        ".toml",
        ".json",
        ".csproj",
        ".props",
        ".config",
        ".xml",
        ".gradle",
        ".mod",
        ".cfg",
        "Pipfile",
    } <= suffixes


def test_ga_clean_programs_have_no_findings() -> None:
    """GA programs, manifests and configuration produce nothing and exit 0."""
    code, doc = run_json(GA)
    assert doc["findings"] == []
    assert doc["summary"]["files_scanned"] >= 14
    assert code == 0


def test_text_report_groups_by_checklist_item() -> None:
    """The text report lists checklist items in order, with file:line:col and a summary."""
    code, out = run_cli("check", str(PREVIEW / "node_ws"), "--no-progress")
    assert code == 1
    titles = [line for line in out.splitlines() if line[:2] in ("1.", "2.", "3.", "4.", "5.", "6.", "7.")]
    assert titles == sorted(titles)
    assert "index.js:11:5: error [beta-header]" in out
    assert out.rstrip().splitlines()[-1].startswith("Summary: ")
