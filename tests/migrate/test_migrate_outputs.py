"""Outputs and the command line: JSON, SARIF 2.1.0, exit codes, --help, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from .helpers import PREVIEW, SARIF_SCHEMA, run_cli, run_json


@pytest.fixture(scope="module")
def sarif() -> dict:
    code, out = run_cli("check", str(PREVIEW), "--format", "sarif", "--no-progress")
    assert code == 1
    return json.loads(out)


def test_sarif_validates_against_the_official_schema(sarif: dict) -> None:
    """The SARIF log validates against the OASIS SARIF 2.1.0 JSON schema (errata 01)."""
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(sarif)


def test_sarif_results_reference_rules_and_regions(sarif: dict) -> None:
    """Each result names its rule by id and index and points at a 1-based region."""
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["results"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
    assert any("fixes" in r for r in run["results"])


def test_json_report_shape() -> None:
    """--format json has a summary and one object per finding with position and change."""
    code, doc = run_json(PREVIEW / "node_ws")
    assert code == 1 and doc["version"] == 1
    first = doc["findings"][0]
    assert {
        "rule",
        "severity",
        "checklist",
        "path",
        "line",
        "column",
        "message",
        "change",
        "fixable",
    } <= set(first)
    assert doc["summary"]["findings"] == len(doc["findings"])


def test_exit_codes(tmp_path: Path) -> None:
    """0 clean, 1 findings, 2 usage error (unknown option, missing path)."""
    (tmp_path / "ok.py").write_text("print('hello')\n")
    assert run_cli("check", str(tmp_path), "--no-progress")[0] == 0
    assert run_cli("check", str(PREVIEW / "go_snippet"), "--no-progress")[0] == 1
    assert run_cli("check", str(tmp_path / "missing"))[0] == 2
    assert run_cli("check", "--format", "xml", str(tmp_path))[0] == 2
    assert run_cli()[0] == 2


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    """--help explains the fix policy, ignore comments and exit codes."""
    assert run_cli("check", "--help")[0] == 0
    text = capsys.readouterr().out
    assert "rtgate: ignore[event-renamed]" in text and "exit status" in text


def test_rules_command_lists_every_rule() -> None:
    """rtgate migrate rules prints the table."""
    code, out = run_cli("rules")
    assert code == 0 and "event-renamed" in out and "sdk-version-python" in out


def test_output_file(tmp_path: Path) -> None:
    """-o writes the report to a file."""
    target = tmp_path / "report.sarif"
    run_cli("check", str(PREVIEW / "go_snippet"), "--format", "sarif", "-o", str(target))
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_python_dash_m_and_light_start_up() -> None:
    """python -m rtgate.migrate works, and start-up imports no parser or network library."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    code = (
        "import sys, rtgate.migrate.cli as c; "
        "heavy = {'tree_sitter', 'websockets', 'pathspec', 'jsonschema', 'numpy'}; "
        "heavy &= set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtgate.migrate",
            "check",
            "--no-progress",
            str(PREVIEW / "go_snippet"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 1 and "[beta-header]" in run.stdout


def test_docs_list_every_rule() -> None:
    """docs/migrate.md has an anchored row for every rule id (SARIF help points there)."""
    from rtgate.migrate.rules import RULES

    docs = (Path(__file__).parents[2] / "docs" / "migrate.md").read_text()
    missing = [r.id for r in RULES if f'<a id="{r.id}"></a>`{r.id}`' not in docs]
    assert missing == []
