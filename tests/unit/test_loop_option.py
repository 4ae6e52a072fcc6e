"""``rtgate serve --loop`` / ``RTGATE_LOOP``: which event loop the server runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import urllib.request

import pytest

from rtgate.cli import event_loop_name, main
from rtgate.server.settings import Settings

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_the_default_is_auto_and_the_environment_can_choose() -> None:
    """``auto`` unless ``RTGATE_LOOP`` says otherwise; the value is printed at start-up."""
    assert Settings().server.loop == "auto"
    settings = Settings.from_env({"RTGATE_LOOP": "asyncio"})
    assert settings.server.loop == "asyncio"
    assert "loop" in settings.describe()


def test_an_unknown_loop_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="auto, asyncio, uvloop"):
        Settings(loop="trio")


def test_the_flag_is_documented_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    assert "--loop {auto,asyncio,uvloop}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["serve", "--loop", "trio"])
    assert info.value.code == 2


def test_auto_follows_whether_uvloop_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's rule: uvloop when importable; ``asyncio`` is always honoured."""
    assert event_loop_name("asyncio") == "asyncio"
    assert event_loop_name("auto") == ("uvloop" if HAS_UVLOOP else "asyncio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now raises ImportError
    assert event_loop_name("auto") == "asyncio"
    assert event_loop_name("uvloop") is None


def test_asking_for_a_missing_uvloop_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert main(["serve", "--pipeline", "builtin", "--loop", "uvloop"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_server_runs_and_answers_on_each_loop(loop: str) -> None:
    """`rtgate serve --loop X` starts on X (its log says so) and answers on 127.0.0.1."""
    if loop == "uvloop" and not HAS_UVLOOP:
        pytest.skip("uvloop is not installed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtgate", "serve", "--pipeline", "builtin", "--port", "0",
         "--loop", loop, "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RTGATE_API_KEYS": ""},
    )
    try:
        assert proc.stdout is not None
        said_loop, url = False, None
        for line in proc.stdout:  # blocks on the server's own log lines, no sleeping
            said_loop = said_loop or f"event loop: {loop}" in line
            if "Uvicorn running on " in line:
                url = line.split("Uvicorn running on ", 1)[1].split()[0]
                break
        assert said_loop, "no 'event loop' line before the server started"
        assert url is not None and url.startswith("http://127.0.0.1:"), url
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(15)
