"""``--fix``: safe rewrites that parse back, a diff, idempotence (issue 6, "Proof")."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from rtgate.migrate.check import run_check
from rtgate.migrate.fixer import apply_edits, fix_text, parses
from rtgate.migrate.model import Edit, Lang

from .helpers import PREVIEW, run_cli, run_json


@pytest.fixture(scope="module")
def fixed_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("corpus") / "preview"
    shutil.copytree(PREVIEW, root)
    code, out = run_cli("check", str(root), "--fix", "--no-progress")
    assert code == 1  # findings that need a human remain
    return root, out


def test_fix_prints_a_unified_diff(fixed_corpus: tuple[Path, str]) -> None:
    """--fix shows what it changed as a unified diff."""
    _, out = fixed_corpus
    assert "--- a/" in out and "+++ b/" in out
    assert '+            if event.type == "response.output_text.delta":' in out


def test_fixed_python_compiles(fixed_corpus: tuple[Path, str]) -> None:
    """Every fixed Python file still compiles."""
    root, _ = fixed_corpus
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize(
    ("pattern", "lang"),
    [("*.js", Lang.JS), ("*.ts", Lang.TS), ("*.html", Lang.HTML), ("*.json", Lang.JSON)],
)
def test_fixed_js_ts_html_json_parse(fixed_corpus: tuple[Path, str], pattern: str, lang: Lang) -> None:
    """Every fixed JS/TS/HTML/JSON file still parses (tree-sitter / json)."""
    root, _ = fixed_corpus
    paths = list(root.rglob(pattern))
    assert paths
    for path in paths:
        assert parses(path.read_text(), lang), path


def test_second_run_finds_nothing_fixable(fixed_corpus: tuple[Path, str]) -> None:
    """After --fix, no finding is left that --fix could change."""
    root, _ = fixed_corpus
    _, doc = run_json(root)
    assert doc["summary"]["fixable"] == 0
    assert doc["findings"]  # the rest needs a human: reported with the change to make


def test_fix_is_idempotent(fixed_corpus: tuple[Path, str]) -> None:
    """A second --fix writes nothing."""
    root, _ = fixed_corpus
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    report = run_check([str(root)], fix=True, jobs=1)
    assert report.fixed == []
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_fix_applies_the_expected_rewrites(fixed_corpus: tuple[Path, str]) -> None:
    """URLs, headers, events, SDK namespaces and session.type are rewritten as specified."""
    root, _ = fixed_corpus
    js = (root / "node_ws/index.js").read_text()
    assert "/openai/v1/realtime?model=${deployment}`" in js
    assert "OpenAI-Beta" not in js
    # Its session.update is migrated whole: typed, fields moved under audio (issue 15).
    assert 'type: "realtime",' in js and 'output: {\n            voice: "shimmer",' in js
    assert "modalities: [" not in js.replace("output_modalities", "")
    assert '{ type: "output_text", text: "Earlier I said hello." }' in js
    py = (root / "py_beta_realtime/app.py").read_text()
    assert "client.realtime.connect(" in py and "client.beta.realtime.connect" not in py
    # The session.update is migrated whole (typed, no Preview field left).
    session = next(
        n
        for n in ast.walk(ast.parse(py))
        if isinstance(n, ast.Dict) and n.keys and _key(n, 1) == "output_modalities"
    )
    assert [_key(session, i) for i in range(len(session.keys))] == [
        "type", "output_modalities", "audio", "max_output_tokens"
    ]
    assert '"max_response_output_tokens": 512' not in py
    ts = (root / "ts_client/realtime.ts").read_text()
    assert '"openai/realtime/websocket"' in ts
    cs = (root / "dotnet_console/Program.cs").read_text()
    assert 'case "response.output_text.delta":' in cs
    assert "?model={Deployment}" in cs


def _key(node: ast.Dict, index: int) -> object:
    key = node.keys[index]
    return key.value if isinstance(key, ast.Constant) else None


def test_report_only_findings_are_untouched(fixed_corpus: tuple[Path, str]) -> None:
    """Findings without a safe fix (C# header statement, Preview session fields) stay."""
    root, _ = fixed_corpus
    cs = (root / "dotnet_console/Program.cs").read_text()
    assert 'SetRequestHeader("OpenAI-Beta", "realtime=v1")' in cs
    assert "modalities = new[]" in cs


def test_unparsable_file_is_not_fixed(tmp_path: Path) -> None:
    """A file that does not parse before fixing is never written."""
    path = tmp_path / "broken.py"
    source = 'if event.type == "response.text.delta"\n    pass\n'
    path.write_text(source)
    report = run_check([str(path)], fix=True)
    assert path.read_text() == source
    assert "does not parse" in report.results[0].fix_refused


def test_edit_that_breaks_parsing_is_refused() -> None:
    """When applying all edits breaks the parse, only edits that keep it parsing are kept."""
    text = 'x = {"type": "session.update", "session": {"instructions": "x"}}\n'
    fixed, reason = fix_text(text, Lang.PYTHON)
    assert fixed is not None and parses(fixed, Lang.PYTHON)
    assert reason == ""
    bad = apply_edits(text, [Edit(0, 1, "(")])
    assert not parses(bad, Lang.PYTHON)


def test_overlapping_edits_keep_the_first() -> None:
    """apply_edits drops an edit that overlaps an earlier one."""
    assert apply_edits("abcdef", [Edit(1, 3, "X"), Edit(2, 4, "Y"), Edit(5, 6, "Z")]) == "aXdeZ"


def test_json_fix_keeps_valid_json(tmp_path: Path) -> None:
    """A JSON config whose fix would leave a trailing comma is not written."""
    path = tmp_path / "headers.json"
    path.write_text(json.dumps({"headers": {"api-key": "k", "OpenAI-Beta": "realtime=v1"}}))
    run_check([str(path)], fix=True)
    json.loads(path.read_text())
