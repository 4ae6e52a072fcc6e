"""Renames consistent across a package (issue 15): an event name is renamed in every file of
a package or in none, with a finding that says which file keeps it and why."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rtgate.migrate.check import run_check
from rtgate.migrate.renames import package_of

from .helpers import run_cli

DISPATCH = """export function route(client, event) {
  client.dispatch(`server.${event.type}`, event);
  if (event.type === 'response.audio.delta') client.dispatch('server.response.audio.delta', event);
}
"""
HANDLERS = """export function attach(client) {
  client.on('server.response.audio.delta', (e) => play(e.delta));
  client.on('server.response.text.delta', (e) => show(e.delta));
}
"""
# Does not parse (a missing parenthesis); its Preview name sits in the text the parser
# cannot read, so --fix cannot rename it there.
BROKEN = """export function legacy(client) {
  client.on('server.response.audio.delta', (e) => { play(e.delta)
}
"""
APP = "ws.on('message', (m) => { if (JSON.parse(m).type === 'response.audio.delta') play(); });\n"


def _notebook(source: str) -> str:
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [source]}
    return json.dumps({"cells": [cell], "metadata": {"kernelspec": {"name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5}, indent=1)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A library package (``pkg``, with a manifest) and an app outside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg/src").mkdir(parents=True)
    (tmp_path / "pkg/package.json").write_text('{"name": "rt-lib", "version": "0.1.0"}\n')
    (tmp_path / "pkg/src/dispatch.js").write_text(DISPATCH)
    (tmp_path / "pkg/src/handlers.js").write_text(HANDLERS)
    (tmp_path / "app").mkdir()
    (tmp_path / "app/package.json").write_text('{"name": "app"}\n')
    (tmp_path / "app/app.js").write_text(APP)
    return tmp_path


def test_a_package_renames_in_all_files(tree: Path) -> None:
    code, _ = run_cli("check", ".", "--fix", "--no-progress")
    assert code == 0
    assert "'server.response.output_audio.delta'" in (tree / "pkg/src/dispatch.js").read_text()
    assert "'server.response.output_audio.delta'" in (tree / "pkg/src/handlers.js").read_text()


def test_a_file_that_keeps_the_name_stops_it_everywhere_in_the_package(tree: Path) -> None:
    (tree / "pkg/src/broken.js").write_text(BROKEN)
    code, out = run_cli("check", ".", "--fix", "--format", "json", "--no-progress")
    assert code == 1
    report = json.loads(out)
    # 'response.audio.delta' stays in every file of pkg; the other rename and the app's go on.
    assert (tree / "pkg/src/dispatch.js").read_text() == DISPATCH
    handlers = (tree / "pkg/src/handlers.js").read_text()
    assert "'server.response.audio.delta'" in handlers
    assert "'server.response.output_text.delta'" in handlers
    assert "'response.output_audio.delta'" in (tree / "app/app.js").read_text()
    held = [f for f in report["findings"] if "response.audio.delta'" in f["message"]]
    assert sorted((os.path.basename(f["path"]), f["line"]) for f in held) == [
        ("broken.js", 2), ("dispatch.js", 3), ("dispatch.js", 3), ("handlers.js", 2)]
    for f in held:
        assert not f["fixable"]
        assert "--fix renames it in no file of this package: pkg/src/broken.js:2 keeps it" in f["change"]
        assert "touch code the parser cannot read" in f["change"]
    # Idempotent: a second run changes nothing.
    before = {p: p.read_text() for p in tree.rglob("*.js")}
    run_cli("check", ".", "--fix", "--no-progress")
    assert {p: p.read_text() for p in tree.rglob("*.js")} == before


def test_a_notebook_in_the_package_holds_the_rename_in_check_and_fix(tree: Path) -> None:
    (tree / "pkg/demo.ipynb").write_text(_notebook('if event.type == "response.text.delta":\n    pass\n'))
    report = run_check(["."])
    held = [f for f in report.findings if f.rename_of == "response.text.delta"]
    assert len(held) == 2 and not any(f.fixable for f in held)
    assert all("pkg/demo.ipynb:" in f.change and "a notebook, which --fix does not edit" in f.change for f in held)
    # The other name is still fixable, and --fix renames it in the whole package only.
    assert all(f.fixable for f in report.findings if f.rename_of == "response.audio.delta")
    run_check(["."], fix=True)
    handlers = (tree / "pkg/src/handlers.js").read_text()
    assert "'server.response.text.delta'" in handlers
    assert "'server.response.output_audio.delta'" in handlers


def test_package_is_the_nearest_manifest(tmp_path: Path) -> None:
    (tmp_path / "a/b/c").mkdir(parents=True)
    (tmp_path / "a/pyproject.toml").write_text("[project]\nname = 'a'\n")
    (tmp_path / "a/b/c/x.py").write_text("")
    (tmp_path / "a/b/Lib.csproj").write_text("<Project/>")
    cache: dict[str, str] = {}
    assert package_of(str(tmp_path / "a/b/c/x.py"), cache) == str(tmp_path / "a/b")
    assert package_of(str(tmp_path / "a/y.py"), cache) == str(tmp_path / "a")


def test_files_outside_any_package_are_judged_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loose samples with no manifest above them are not one library."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.js").write_text(HANDLERS)
    (tmp_path / "b.js").write_text(BROKEN)
    run_check(["."], fix=True)
    assert "'server.response.output_audio.delta'" in (tmp_path / "a.js").read_text()
    assert (tmp_path / "b.js").read_text() == BROKEN
