"""TypeScript-aware ``--fix`` (issue 15): a payload checked against a declared Preview type
is left alone with the reason (an inserted ``type`` broke ``tsc``), everything else is fixed,
and valid syntax the bundled grammar misreads (a ``.d.ts`` with ``in out`` variance) is
fixed instead of refused. The fixed sample is compiled by the real TypeScript compiler."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rtgate.migrate import payloads
from rtgate.migrate.engine import scan_text
from rtgate.migrate.fixer import fix_text, syntax_errors
from rtgate.migrate.model import Lang
from rtgate.migrate.tstypes import declared_type, type_conflict

from .helpers import HERE, run_cli

SAMPLE = HERE / "samples" / "ts_app"
NODE_MODULES = HERE / "node" / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
needs_tsc = pytest.mark.skipif(
    shutil.which("node") is None or not TSC.exists() or not (NODE_MODULES / "openai").is_dir(),
    reason="Node, typescript or openai-node missing (scripts/setup.sh --test installs them)",
)


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    (app / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return app


def _tsc(app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TSC), "-p", str(app)], capture_output=True, text=True, timeout=120, check=False)


@needs_tsc
def test_fixed_typescript_app_compiles(tmp_path: Path) -> None:
    app = _app(tmp_path)
    code, out = run_cli("check", str(app), "--fix", "--format", "json", "--no-progress")
    report = json.loads(out)
    assert code == 1, out  # the typed updates stay, reported
    assert sorted(Path(f["path"]).name for f in report["fixed"]) == ["client.ts", "events.d.ts"]
    assert report["fix_refused"] == []
    client = (app / "client.ts").read_text()
    # Untyped and GA-typed updates rewritten; the Preview-typed ones untouched.
    assert client.count("type: 'realtime'") == 2
    assert "session: { modalities: ['text', 'audio'], voice: 'alloy', input_audio_format: 'pcm16' }" in client
    assert "session: { instructions: 'Be brief.', voice: 'echo' }" in client
    # The declaration file (valid syntax the grammar misreads) was fixed, not refused.
    assert "'response.output_audio.delta'" in (app / "events.d.ts").read_text()
    left = [f for f in report["findings"] if f["path"].endswith("client.ts") and f["line"] in (31, 34)]
    assert left and all("--fix leaves this update alone: it is typed" in f["change"] for f in left)
    assert {f["rule"] for f in left} == {"session-missing-type", "session-preview-field"}
    assert any("'SessionUpdateCommand' (its annotation, line 29)" in f["change"] for f in left)
    assert any("parameter of sendCommand()" in f["change"] for f in left)
    done = _tsc(app)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_tsc
def test_without_the_type_check_the_fix_breaks_tsc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: rewriting the Preview-typed updates anyway is what tsc rejects."""
    monkeypatch.setattr(payloads, "type_conflict", lambda *_: "")
    app = _app(tmp_path)
    run_cli("check", str(app), "--fix", "--no-progress")
    done = _tsc(app)
    assert done.returncode != 0
    assert "client.ts(31," in done.stdout and "client.ts(34," in done.stdout, done.stdout


TYPED = [
    ("const u: Cmd = {type: 'session.update', session: {voice: 'a'}};", "Cmd", "its annotation"),
    ("send({type: 'session.update', session: {voice: 'a'}} as Cmd);", "Cmd", "'as'"),
    ("const u = {type: 'session.update', session: {voice: 'a'}} satisfies Cmd;", "Cmd", "'satisfies'"),
    ("const u = <Cmd>{type: 'session.update', session: {voice: 'a'}};", "Cmd", "a type assertion"),
    ("function f(): Cmd { return {type: 'session.update', session: {voice: 'a'}}; }", "Cmd",
     "the function's return type"),
    ("const f = (): Cmd => ({type: 'session.update', session: {voice: 'a'}});", None, ""),
    ("class A { cmd: Cmd = {type: 'session.update', session: {voice: 'a'}}; }", "Cmd", "its annotation"),
    ("function f(c: Cmd = {type: 'session.update', session: {voice: 'a'}}) {}", "Cmd", "its annotation"),
    ("class A { sendEvent(e: Cmd) {} go() { this.sendEvent({type: 'session.update', session: {voice: 'a'}}); } }",
     "Cmd", "the parameter of sendEvent() declared in this file"),
    ("rt.send({type: 'session.update', session: {voice: 'a'}});", None, ""),
    ("const u = {type: 'session.update', session: {voice: 'a'}};", None, ""),
]


@pytest.mark.parametrize(("code", "declared", "where"), TYPED)
def test_declared_type(code: str, declared: str | None, where: str) -> None:
    offset = code.index("session: {") + len("session: ")
    found = declared_type(code, offset, Lang.TS)
    if declared is None:
        assert found is None
    else:
        assert found is not None and found[:2] == (declared, where)


@pytest.mark.parametrize(
    ("prefix", "annotation", "conflict"),
    [
        ("", "any", False),
        ("", "Record<string, unknown>", False),
        ("", "{ [key: string]: any }", False),
        ("import OpenAI from 'openai';\n", "OpenAI.Realtime.SessionUpdateEvent", False),
        ("import type { SessionUpdateEvent } from 'openai/resources/realtime/realtime';\n",
         "SessionUpdateEvent", False),
        ("import type { SessionUpdateEvent } from 'openai/resources/beta/realtime/realtime';\n",
         "SessionUpdateEvent", True),
        ("import OpenAI from 'openai';\n", "OpenAI.Beta.Realtime.SessionUpdateEvent", True),
        ("", "ClientEvent", True),
    ],
)
def test_which_types_stop_the_rewrite(prefix: str, annotation: str, conflict: bool) -> None:
    code = f"{prefix}const u: {annotation} = {{type: 'session.update', session: {{voice: 'a'}}}};\n"
    offset = code.index("session: {") + len("session: ")
    reason = type_conflict(code, offset, Lang.TS)
    assert bool(reason) is conflict, reason
    if "beta" in annotation.lower() or "beta" in prefix:
        assert "openai-node's Preview type" in reason
    fixed, _ = fix_text(code, Lang.TS)
    assert (fixed is None) is conflict
    if conflict:  # reported, with the reason, and nothing marked fixable
        findings = [f for f in scan_text(code, Lang.TS) if f.rule.id.startswith("session-")]
        assert findings and not any(f.fixable for f in findings)
        assert all(reason in f.change for f in findings)


def test_plain_javascript_has_no_declared_types() -> None:
    code = "const u = {type: 'session.update', session: {voice: 'a'}};\n"
    assert type_conflict(code, code.index("{voice"), Lang.JS) == ""


def test_response_create_typed_is_left_alone() -> None:
    code = (
        "interface R { type: 'response.create'; response: { max_response_output_tokens: number } }\n"
        "const r: R = {type: 'response.create', response: {max_response_output_tokens: 5}};\n"
    )
    (finding,) = [f for f in scan_text(code, Lang.TS) if f.rule.id == "response-preview-field" and f.line == 2]
    assert not finding.fixable and "it is typed 'R'" in finding.change


def test_misread_declaration_file_is_fixed_and_its_unreadable_parts_kept() -> None:
    """A .d.ts the grammar misreads is fixed; an edit may not add or change an error node."""
    text = (SAMPLE / "events.d.ts").read_text()
    before = syntax_errors(text, Lang.TS)
    assert before  # the grammar misreads `in out` and `export type *`
    fixed, why = fix_text(text, Lang.TS)
    assert why == "" and fixed is not None and "'response.output_text.done'" in fixed
    assert syntax_errors(fixed, Lang.TS) == before
    # An edit inside text the grammar cannot read would change that error node: refused,
    # while the edit beside it is kept.
    broken = "x = ['response.audio.delta' 'response.text.done'];\n"
    assert syntax_errors(broken, Lang.TS) == {("ERROR", b"'response.audio.delta'"): 1}
    assert fix_text(broken, Lang.TS) == (
        "x = ['response.audio.delta' 'response.output_text.done'];\n",
        "1 edit(s) not applied: they touch code the parser cannot read",
    )


def test_python_that_does_not_parse_is_still_refused() -> None:
    bad = 'if event.type == "response.text.delta"\n    pass\n'
    assert fix_text(bad, Lang.PYTHON) == (None, "not fixed: the file does not parse as python before fixing")
