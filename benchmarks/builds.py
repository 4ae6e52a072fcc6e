"""Builds of rtgate to benchmark side by side: the working tree and a git ref.

Shared by the benchmarks that run a previous build in the same run as their baseline
(``bench_conversations.py``, ``bench_answers.py``). A build is a ``src/`` directory; a
server of it is ``python -m rtgate serve`` with this Python and ``PYTHONPATH`` set to that
directory, checked to import rtgate from there (:func:`imported_from`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 300.0
"""Longest a server may take to load its models and answer ``/healthz``."""


@dataclass
class Build:
    name: str
    src: Path
    revision: str
    serve_args: tuple[str, ...] = ()
    """Extra ``rtgate serve`` arguments for this build only (the same code, two settings)."""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def current_build() -> Build:
    revision = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--", "src"):
        revision += " + uncommitted changes in src/"
    return Build("current", REPO / "src", revision)


@contextlib.contextmanager
def baseline_build(ref: str) -> Iterator[Build]:
    """A detached ``git worktree`` of ``ref`` in a temporary directory, removed afterwards."""
    revision = git("rev-parse", "--short", f"{ref}^{{commit}}")
    tmp = Path(tempfile.mkdtemp(prefix="rtgate-baseline-"))
    tree = tmp / "tree"
    git("worktree", "add", "--detach", str(tree), revision)
    try:
        yield Build("baseline", tree / "src", revision)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def build_env(build: Build) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(build.src), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def imported_from(build: Build) -> str:
    """Which ``rtgate/__init__.py`` a server of ``build`` imports; fails if not the build's."""
    path = subprocess.run([sys.executable, "-c", "import rtgate; print(rtgate.__file__)"],
                          env=build_env(build), check=True, capture_output=True, text=True).stdout.strip()
    if not Path(path).resolve().is_relative_to(build.src.resolve()):
        raise RuntimeError(f"{build.name} imports rtgate from {path}, not from {build.src}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], port: int, name: str, log_path: Path) -> None:
    """Wait until the server on ``port`` answers ``/healthz`` (its models are loaded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} server exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} server not ready in {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.5)  # polling a start-up condition with a deadline
