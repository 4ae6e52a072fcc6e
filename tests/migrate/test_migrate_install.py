"""The checker as installed by the README (no test extras): declared imports, no crash in a
git repository, distinct exit codes for a crash and for findings (issue 15)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MIGRATE = ROOT / "src/rtgate/migrate"
PREVIEW_PY = 'if event.type == "response.text.delta":\n    pass\n'


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, set[str], str]:
    """``(name, extras, marker)`` of a PEP 508 requirement string."""
    m = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?[^;]*;?(.*)", spec)
    assert m, spec
    extras = {_norm(e) for e in (m.group(2) or "").split(",") if e.strip()}
    return _norm(m.group(1)), extras, m.group(3)


def _runtime_distributions(*extras_: str) -> set[str]:
    """The project's runtime dependencies (the base install, and the project's ``extras_``),
    with what their requested extras pull in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: set[str] = set()
    optional = [spec for extra in extras_ for spec in project["optional-dependencies"][extra]]
    for spec in [*project["dependencies"], *optional]:
        name, extras, _ = _requirement(spec)
        declared.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:  # a marker excludes it here (audioop-lts < 3.13)
            continue
        for sub in requires:
            sub_name, _, marker = _requirement(sub)
            wanted = re.findall(r"""extra\s*==\s*["']([^"']+)["']""", marker)
            if wanted and {_norm(w) for w in wanted} & extras:
                declared.add(sub_name)
    return declared


def _imported_modules(package: Path) -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere under ``package`` (deferred too)."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "rtgate":
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_import_of_the_checker_is_a_declared_dependency() -> None:
    """Each module rtgate.migrate imports comes from a distribution pyproject declares for
    it, the base install or the ``migrate`` extra (--fix); the test tools must not be what
    makes the checker work: pathspec came from mypy."""
    runtime = _runtime_distributions("migrate")
    providers = md.packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in _imported_modules(MIGRATE).items()
        if not {_norm(d) for d in providers.get(module, [])} & runtime
    }
    assert undeclared == {}


# Run in a child interpreter: every module that only the test extras install is made
# unimportable, as in a virtualenv set up exactly as the README says.
_BLOCKER = """
import importlib.metadata as md, json, sys
blocked = set(json.loads(sys.argv[1]))
for module, dists in md.packages_distributions().items():
    if blocked & {d.lower().replace('_', '-') for d in dists}:
        sys.modules[module] = None
sys.argv = ["rtgate", *sys.argv[2:]]
from rtgate.cli import main
raise SystemExit(main())
"""


def _test_only_distributions() -> list[str]:
    """Distributions installed only because of the ``test`` extra (pathspec via mypy…)."""
    runtime = _runtime_distributions()
    closure: set[str] = set()
    todo = [_norm(_requirement(s)[0]) for s in md.requires("rtgate") or [] if 'extra == "test"' in s]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo.extend(_requirement(r)[0] for r in requires if "extra ==" not in r)
    needed: set[str] = set()
    todo = list(runtime)
    while todo:  # everything the runtime closure needs stays importable
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        try:
            todo.extend(_requirement(r)[0] for r in md.requires(name) or [] if "extra ==" not in r)
        except md.PackageNotFoundError:
            continue
    return sorted(closure - needed)


def _rtgate(*argv: str, blocked: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", _BLOCKER, json.dumps(blocked), *argv]
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_check_in_a_git_repository_without_test_tools(tmp_path: Path) -> None:
    """`rtgate migrate check .` in a tree with a .gitignore works without the test extras
    (it crashed with ModuleNotFoundError: pathspec) and reports its finding with exit 1."""
    blocked = _test_only_distributions()
    assert "pathspec" in blocked and "pytest" in blocked
    (tmp_path / ".gitignore").write_text("node_modules\n*.log\n")
    (tmp_path / "app.py").write_text(PREVIEW_PY)
    run = _rtgate("migrate", "check", ".", "--no-progress", blocked=blocked, cwd=tmp_path)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1
    assert "app.py:1:18: error [event-renamed]" in run.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("migrate", "probe", "--help"),
        ("migrate", "rules"),
        ("migrate", "check", "--help"),
        ("serve", "--help"),
    ],
)
def test_cli_commands_run_without_test_tools(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """Each CLI command the README names starts without the test extras."""
    run = _rtgate(*argv, blocked=_test_only_distributions(), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr


def test_fix_without_the_migrate_extra_exits_2_naming_it(tmp_path: Path) -> None:
    """--fix without tree-sitter (the ``migrate`` extra) is refused before any file is
    touched: exit 2 (usage), one line naming the extra, no traceback."""
    (tmp_path / "app.ts").write_text('if (e.type === "response.text.delta") {}\n')
    run = _rtgate(
        "migrate", "check", "app.ts", "--fix", "--no-progress", blocked=["tree-sitter"], cwd=tmp_path
    )
    assert run.returncode == 2
    assert "pip install 'rtgate[migrate]'" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "app.ts").read_text() == 'if (e.type === "response.text.delta") {}\n'


def test_internal_error_exits_3_not_1(tmp_path: Path) -> None:
    """A crash of the checker (here: a broken install whose SARIF renderer cannot be
    imported) exits 3 with the traceback on stderr, never 1 ("findings")."""
    (tmp_path / "app.py").write_text(PREVIEW_PY)
    crash = ("import sys\nsys.modules['rtgate.migrate.sarif'] = None\n"
             "sys.argv = ['rtgate', 'migrate', 'check', '.', '--no-progress', '--format', 'sarif']\n"
             "from rtgate.cli import main\nraise SystemExit(main())\n")
    run = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 3
    assert "internal error" in run.stderr and "Traceback" in run.stderr


def test_findings_exit_1_clean_exit_0_usage_exit_2(tmp_path: Path) -> None:
    """The documented exit statuses: 0 clean, 1 findings, 2 usage."""
    (tmp_path / "old.py").write_text(PREVIEW_PY)
    (tmp_path / "new.py").write_text(PREVIEW_PY.replace("text.delta", "output_text.delta"))
    statuses = [
        _rtgate("migrate", "check", name, "--no-progress", blocked=[], cwd=tmp_path).returncode
        for name in ("new.py", "old.py", "missing.py")
    ]
    assert statuses == [0, 1, 2]
