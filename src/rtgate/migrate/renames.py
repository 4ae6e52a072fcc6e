"""Renames consistent across a package: a Preview name is renamed in every file of the
package or in none.

Why: a library names an event in several files (a dispatcher, its handlers, its type
declarations). When ``--fix`` renames it in some files and another file keeps it (a
notebook, which is never fixed; a file whose fix was refused because it does not parse),
the package disagrees with itself: handlers wait for a name nobody dispatches any more.

Contracts:

* A package is the nearest directory above a file that holds a manifest
  (:data:`MANIFESTS`, or a ``*.csproj``). A file with no manifest above it belongs to no
  package and is judged on its own (a tree of loose samples is not one library).
* :func:`hold_inconsistent` looks at the findings of :data:`~.model.RENAME_RULES`
  (``Finding.rename_of``). A name is *held* in a package when some file of it would be
  renamed (a fixable finding, or a written fix that renamed it) while another occurrence
  stays (a finding that is not fixable, or that a fix did not remove). For every held name,
  files whose fix renamed it are fixed again without that rename (``refix``), and every
  finding of it is marked not fixable, its ``change`` saying which file keeps the name and
  why. Everything else ``--fix`` does is unaffected.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable

from .model import FileResult, Finding

MANIFESTS = (
    "package.json",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "Cargo.toml",
)


def package_of(path: str, cache: dict[str, str]) -> str:
    """The package directory of ``path`` ("" when no manifest is above it)."""
    directory = os.path.dirname(os.path.abspath(path))
    seen: list[str] = []
    found = ""
    while True:
        if directory in cache:
            found = cache[directory]
            break
        seen.append(directory)
        try:
            names = set(os.listdir(directory))
        except OSError:
            names = set()
        if names.intersection(MANIFESTS) or any(n.endswith(".csproj") for n in names):
            found = directory
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for d in seen:
        cache[d] = found
    return found


def _keeper(result: FileResult, finding: Finding) -> str:
    where = f"{result.path}:{finding.line}"
    if result.fix_refused:
        return f"{where} keeps it ({result.fix_refused})"
    if finding.context:
        return f"{where} keeps it ({finding.context} of a notebook, which --fix does not edit)"
    if not finding.fixable:
        return f"{where} keeps it (not fixable there)"
    return f"{where} keeps it"


def hold_inconsistent(
    results: list[FileResult], fixed: bool, refix: Callable[[FileResult, frozenset[str]], None]
) -> None:
    """Apply the package rule (module contract). ``fixed``: the results carry a ``--fix``
    run's outcome; ``refix(result, hold)`` redoes one file's fix without the held names."""
    cache: dict[str, str] = {}
    packages: dict[str, list[FileResult]] = defaultdict(list)
    for result in results:
        if result.renamed or any(f.rename_of for f in result.findings):
            package = package_of(result.path, cache) or f"file:{result.path}"
            packages[package].append(result)
    for members in packages.values():
        renamed: set[str] = set()
        kept: dict[str, str] = {}
        for result in members:
            renamed |= result.renamed
            for f in result.findings:
                if not f.rename_of:
                    continue
                stays = fixed or not f.fixable or bool(result.fix_refused)
                if stays:
                    kept.setdefault(f.rename_of, _keeper(result, f))
                else:
                    renamed.add(f.rename_of)
        held = frozenset(renamed & kept.keys())
        if not held:
            continue
        for result in members:
            if fixed and result.renamed & held:
                refix(result, held)
            for f in result.findings:
                if f.rename_of in held:
                    f.fixable = False
                    f.change += (
                        f" (--fix renames it in no file of this package: {kept[f.rename_of]};"
                        " rename it everywhere by hand or fix that file first)"
                    )
