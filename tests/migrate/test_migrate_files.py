"""Which files are read: kinds, .gitignore, include/exclude, binary and huge files,
notebooks, progress and parallel scanning."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtgate.migrate.check import run_check
from rtgate.migrate.files import Selection, classify
from rtgate.migrate.gitignore import IgnoreSpec
from rtgate.migrate.model import Lang

from .helpers import PREVIEW

PREVIEW_LINE = 'if event.type == "response.text.delta":\n    pass\n'


def _paths(tmp: Path, selection: Selection | None = None) -> list[str]:
    report = run_check([str(tmp)], selection)
    return sorted(Path(r.path).name for r in report.results if r.findings)


def test_classify_by_name() -> None:
    """Manifests and languages are recognised by file name."""
    assert classify("requirements-dev.txt") is Lang.REQUIREMENTS
    assert classify("Directory.Packages.props") is Lang.NUGET
    assert classify("build.gradle.kts") is Lang.GRADLE
    assert classify(".env.local") is Lang.ENV
    assert classify("App.tsx") is Lang.TSX
    assert classify("bundle.min.js") is None
    assert classify("notes.md") is None


def test_gitignore_is_honoured(tmp_path: Path) -> None:
    """Files listed in .gitignore (at any level) are skipped unless --no-gitignore."""
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / ".gitignore").write_text("gen_*.py\n")
    for rel in ("app.py", "build/out.py", "pkg/gen_a.py", "pkg/b.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(PREVIEW_LINE)
    assert _paths(tmp_path) == ["app.py", "b.py"]
    assert _paths(tmp_path, Selection(use_gitignore=False)) == [
        "app.py",
        "b.py",
        "gen_a.py",
        "out.py",
    ]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    """--include keeps only matching files; --exclude drops files and directories."""
    for rel in ("a.py", "b.js", "tests/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text('x = "response.text.delta"\n')
    assert _paths(tmp_path, Selection(include=["*.py"])) == ["a.py", "c.py"]
    assert _paths(tmp_path, Selection(exclude=["tests/"])) == ["a.py", "b.js"]


def test_binary_and_huge_files_are_skipped(tmp_path: Path) -> None:
    """A NUL byte marks a binary file; files over max_bytes are not read."""
    (tmp_path / "bin.py").write_bytes(b"\x00\x01" + PREVIEW_LINE.encode())
    (tmp_path / "big.py").write_text(PREVIEW_LINE * 50)
    report = run_check([str(tmp_path)], max_bytes=1000)
    reasons = sorted(r.skipped.split()[0] for r in report.results)
    assert reasons == ["binary", "larger"]
    assert report.findings == []


def test_notebook_findings_point_into_the_ipynb(tmp_path: Path) -> None:
    """Notebook findings carry the cell and the line of the .ipynb holding the source."""
    report = run_check([str(PREVIEW / "notebook")])
    lines = (PREVIEW / "notebook/realtime_demo.ipynb").read_text().splitlines()
    for finding in report.findings:
        assert finding.context.startswith("cell ")
        assert finding.snippet.split("(")[0].strip()[:10] in lines[finding.line - 1]


def test_crlf_and_undecodable_bytes_survive_fix(tmp_path: Path) -> None:
    """--fix preserves line endings and bytes it does not understand."""
    path = tmp_path / "app.js"
    path.write_bytes(b'// caf\xe9\r\nif (t === "response.text.delta") {}\r\n')
    run_check([str(path)], fix=True)
    assert path.read_bytes() == b'// caf\xe9\r\nif (t === "response.output_text.delta") {}\r\n'


def test_progress_reports_every_file(tmp_path: Path) -> None:
    """The progress callback ends at (total, total) and never goes backwards."""
    for i in range(130):
        (tmp_path / f"m{i}.py").write_text("x = 1\n")
    seen: list[tuple[int, int]] = []
    run_check([str(tmp_path)], jobs=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (130, 130)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_parallel_scan_matches_serial_scan(tmp_path: Path) -> None:
    """Splitting work over processes gives the same findings in the same order."""
    for i in range(130):
        body = PREVIEW_LINE if i % 7 == 0 else "x = 1\n"
        (tmp_path / f"m{i:04}.py").write_text(body)
    serial = run_check([str(tmp_path)], jobs=1)
    parallel = run_check([str(tmp_path)], jobs=2, min_parallel=100)
    key = [(f.path, f.line, f.rule.id) for f in serial.findings]
    assert key == [(f.path, f.line, f.rule.id) for f in parallel.findings]
    assert len(key) == len(range(0, 130, 7))


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["node_modules"], "node_modules/", True),
        (["node_modules"], "web/node_modules/", True),
        (["node_modules"], "web/node_modules/x.js", True),
        (["build/"], "build", False),  # a file named build: the pattern wants a directory
        (["build/"], "src/build/", True),
        (["/build"], "src/build/", False),  # anchored to the .gitignore's directory
        (["/build"], "build/", True),
        (["doc/frotz"], "doc/frotz/", True),
        (["doc/frotz"], "a/doc/frotz/", False),  # a middle slash anchors too
        (["*.log"], "logs/debug.log", True),
        (["*.log", "!keep.log"], "keep.log", False),
        (["*.log", "!keep.log"], "x/keep.log", False),
        (["**/foo"], "a/b/foo", True),
        (["**/foo"], "foo", True),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["abc/**"], "abc/x/y", True),
        (["abc/**"], "abc", False),
        (["*.py[cod]"], "m.pyc", True),
        (["*.py[!cod]"], "m.pyc", False),
        (["?.txt"], "a.txt", True),
        (["?.txt"], "ab.txt", False),
        (["# comment", "", "\\#hash"], "#hash", True),
        (["\\!bang"], "!bang", True),
        (["trailing   "], "trailing", True),
        (["a*b"], "a/b", False),  # * does not cross /
        (["*.ts"], "src/app.ts", True),
    ],
)
def test_gitignore_patterns_follow_git(patterns: list[str], path: str, ignored: bool) -> None:
    """IgnoreSpec follows gitignore(5) for the forms real repositories use."""
    assert IgnoreSpec.from_lines(patterns).match_file(path) is ignored
