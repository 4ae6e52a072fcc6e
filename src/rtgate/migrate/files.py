"""Which files ``rtgate migrate check`` reads, and as what.

Contracts:

* :func:`classify` maps a path to a :class:`~rtgate.migrate.model.Lang` by name alone, or
  ``None`` for files the checker does not understand.
* :func:`discover` walks the given roots in a stable (sorted) order and yields
  ``(path, display path, lang)``. It honours ``.gitignore`` files at every level below a
  root (and the root's own), skips :data:`ALWAYS_SKIPPED_DIRS`, and applies
  ``--include``/``--exclude`` patterns (gitignore syntax, matched against the path
  relative to the root). A file named explicitly on the command line is always checked
  when its kind is known.
* :func:`read_text` refuses binary files (a NUL byte in the first 8 KiB) and files larger
  than ``max_bytes``, returning the reason instead of the text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .gitignore import IgnoreSpec
from .model import Lang

MAX_FILE_BYTES = 2 * 1024 * 1024  # larger files are skipped (minified bundles, data)
BINARY_SNIFF_BYTES = 8192

ALWAYS_SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".tox",
        ".nox",
    }
)

_BY_SUFFIX: dict[str, Lang] = {
    ".py": Lang.PYTHON,
    ".pyw": Lang.PYTHON,
    ".js": Lang.JS,
    ".jsx": Lang.JS,
    ".mjs": Lang.JS,
    ".cjs": Lang.JS,
    ".ts": Lang.TS,
    ".mts": Lang.TS,
    ".cts": Lang.TS,
    ".tsx": Lang.TSX,
    ".html": Lang.HTML,
    ".htm": Lang.HTML,
    ".cs": Lang.CSHARP,
    ".java": Lang.JAVA,
    ".go": Lang.GO,
    ".json": Lang.JSON,
    ".jsonc": Lang.JSON,
    ".yaml": Lang.YAML,
    ".yml": Lang.YAML,
    ".env": Lang.ENV,
    ".ipynb": Lang.NOTEBOOK,
    ".csproj": Lang.NUGET,
    ".fsproj": Lang.NUGET,
    ".vbproj": Lang.NUGET,
    ".gradle": Lang.GRADLE,
    ".kts": Lang.GRADLE,
}
_BY_NAME: dict[str, Lang] = {
    "pyproject.toml": Lang.PYPROJECT,
    "setup.cfg": Lang.SETUP_CFG,
    "Pipfile": Lang.PIPFILE,
    "package.json": Lang.PACKAGE_JSON,
    "Directory.Packages.props": Lang.NUGET,
    "packages.config": Lang.NUGET,
    "pom.xml": Lang.MAVEN,
    "go.mod": Lang.GO_MOD,
    ".env": Lang.ENV,
}


def classify(path: str | Path) -> Lang | None:
    """The kind of file at ``path`` judged by its name, or ``None`` if not checked."""
    name = os.path.basename(path)
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith("requirements") and name.endswith((".txt", ".in")):
        return Lang.REQUIREMENTS
    if name.startswith(".env.") or name.endswith(".env"):
        return Lang.ENV
    if name.endswith((".gradle.kts", ".gradle")):
        return Lang.GRADLE
    if name in ("package-lock.json", "tsconfig.json") or name.endswith(".min.js"):
        return None
    suffix = os.path.splitext(name)[1].lower()
    lang = _BY_SUFFIX.get(suffix)
    if lang is Lang.GRADLE and not name.endswith(".gradle.kts"):
        return None  # a plain .kts script is Kotlin, not a build file
    return lang


@dataclass(frozen=True, slots=True)
class Selection:
    """User filters: gitignore-style include and exclude patterns."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    use_gitignore: bool = True


def _spec(lines: Sequence[str]) -> IgnoreSpec:
    return IgnoreSpec.from_lines(lines)


def _load_gitignore(directory: str) -> IgnoreSpec | None:
    path = os.path.join(directory, ".gitignore")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    spec = _spec(lines)
    return spec if spec else None


def discover(roots: Sequence[str], selection: Selection) -> Iterator[tuple[str, str, Lang]]:
    """Yield ``(path, display path, lang)`` for every file to check, in sorted order."""
    include = _spec(selection.include) if selection.include else None
    exclude = _spec(selection.exclude) if selection.exclude else None
    for root in roots:
        if os.path.isfile(root):
            lang = classify(root)
            if lang is not None:
                yield root, root, lang
            continue
        yield from _walk(root, include, exclude, selection.use_gitignore)


def _walk(
    root: str, include: IgnoreSpec | None, exclude: IgnoreSpec | None, use_gitignore: bool
) -> Iterator[tuple[str, str, Lang]]:
    # Each stack entry: (directory, gitignore specs in force with their base directories).
    stack: list[tuple[str, list[tuple[str, IgnoreSpec]]]] = [(root, [])]
    while stack:
        directory, ignores = stack.pop()
        if use_gitignore:
            spec = _load_gitignore(directory)
            if spec is not None:
                ignores = [*ignores, (directory, spec)]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and entry.name in ALWAYS_SKIPPED_DIRS:
                continue
            if _ignored(entry.path, is_dir, ignores):
                continue
            if is_dir:
                if exclude is not None and exclude.match_file(rel + "/"):
                    continue
                subdirs.append(entry.path)
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            lang = classify(entry.name)
            if lang is None:
                continue
            if include is not None and not include.match_file(rel):
                continue
            if exclude is not None and exclude.match_file(rel):
                continue
            yield entry.path, os.path.relpath(entry.path), lang
        stack.extend((d, ignores) for d in reversed(subdirs))


def _ignored(path: str, is_dir: bool, ignores: list[tuple[str, IgnoreSpec]]) -> bool:
    for base, spec in ignores:
        rel = os.path.relpath(path, base).replace(os.sep, "/")
        if spec.match_file(rel + "/" if is_dir else rel):
            return True
    return False


def read_text(path: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str]:
    """``(text, "")`` or ``(None, reason)`` for files that are not checked."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            return None, f"larger than {max_bytes} bytes"
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None, "binary"
    return data.decode("utf-8", errors="surrogateescape"), ""
