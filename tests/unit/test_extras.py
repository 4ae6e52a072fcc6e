"""Faces used without their extra (rtgate.extras): one clear line naming the extra, at start-up.

An extra is made "missing" by pointing its module list at a module that does not exist;
the code paths are the real ones (CLI, engine registry, VAD factory, migrate CLI).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rtgate import extras
from rtgate.cli import main
from rtgate.migrate.cli import main as migrate_main
from rtgate.pipeline.engines.registry import build_engine
from rtgate.server.app import default_vad

ABSENT = "rtgate_tests_no_such_module"


def make_missing(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    monkeypatch.setitem(extras.EXTRAS, extra, (ABSENT, f"{ABSENT}_parent.child"))


def test_every_extra_is_installed_in_the_test_venv() -> None:
    """The test venv is scripts/setup.sh --test: rtgate[all,test]."""
    assert {name: extras.missing(name) for name in extras.EXTRAS} == {name: [] for name in extras.EXTRAS}


def test_require_names_the_extra_and_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    make_missing(monkeypatch, "webrtc")
    assert not extras.installed("webrtc")
    assert extras.missing("webrtc") == [ABSENT, f"{ABSENT}_parent.child"]  # a dotted name too
    with pytest.raises(extras.MissingExtra) as info:
        extras.require("webrtc", "WebRTC calls")
    assert info.value.extra == "webrtc"
    assert str(info.value) == (
        f"WebRTC calls needs the 'webrtc' extra, which is not installed (no module {ABSENT}, "
        f"{ABSENT}_parent.child): pip install 'rtgate[webrtc]'")
    extras.require("speech", "the embedded engines")  # installed: no error


def test_extras_cover_the_declared_optional_dependencies() -> None:
    """Each extra of pyproject.toml but test/engines/all has its module list here, and back."""
    import tomllib

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    optional = set(declared["project"]["optional-dependencies"]) - {"test", "engines", "all"}
    assert optional == set(extras.EXTRAS)
    assert declared["project"]["optional-dependencies"]["all"] == [
        f"rtgate[{','.join(extras.EXTRAS)}]"]


@pytest.mark.parametrize("kind", ["faster-whisper", "llamacpp", "espeak"])
def test_embedded_engine_without_speech(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    make_missing(monkeypatch, "speech")
    stage = {"faster-whisper": "stt", "llamacpp": "llm", "espeak": "tts"}[kind]
    with pytest.raises(extras.MissingExtra, match=r"pip install 'rtgate\[speech\]'"):
        build_engine(stage, {"kind": kind})  # type: ignore[arg-type]


def test_network_engine_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    make_missing(monkeypatch, "speech")
    engine = build_engine("llm", {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert engine is not None


def test_serve_default_pipeline_without_speech(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    make_missing(monkeypatch, "speech")
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "rtgate serve: the embedded faster-whisper engine (stt) needs the 'speech' extra" in err
    assert "pip install 'rtgate[speech]'" in err and "--pipeline builtin" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("extra", "flags"), [
    ("sip", ["--sip-port", "5999"]),
    ("cluster", ["--redis-url", "redis://127.0.0.1:1"]),
])
def test_serve_flags_without_their_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         extra: str, flags: list[str]) -> None:
    make_missing(monkeypatch, extra)
    assert main(["serve", "--pipeline", "builtin", "--port", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtgate serve: ") and f"pip install 'rtgate[{extra}]'" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_tracing_endpoint_without_tracing(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    make_missing(monkeypatch, "tracing")
    monkeypatch.setenv("RTGATE_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    assert main(["serve", "--pipeline", "builtin", "--port", "1"]) == 2
    assert "pip install 'rtgate[tracing]'" in capsys.readouterr().err


def test_vad_without_speech_is_off_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    make_missing(monkeypatch, "speech")
    with caplog.at_level(logging.WARNING, logger="rtgate.server"):
        assert default_vad() is None
    [record] = caplog.records
    assert "Local turn detection" in record.getMessage()
    assert "pip install 'rtgate[speech]'" in record.getMessage()


def test_migrate_fix_without_migrate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--fix is refused before any file is touched; checking works without the extra."""
    app = tmp_path / "app.py"
    app.write_text('EVENT = "response.audio.delta"\n')
    make_missing(monkeypatch, "migrate")
    assert migrate_main(["check", str(tmp_path), "--no-progress", "--fix"]) == 2
    assert "pip install 'rtgate[migrate]'" in capsys.readouterr().err
    assert app.read_text() == 'EVENT = "response.audio.delta"\n'
    assert migrate_main(["check", str(tmp_path), "--no-progress"]) == 1  # a finding, no extra needed


def test_base_entry_points_import_no_extra() -> None:
    """The server, relay, workers and migrate import no module of an extra at import time
    (a fresh interpreter: other tests have imported them all), so the base install starts;
    scripts/check-plain-install.sh proves it in a venv without them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import rtgate.cli, rtgate.server.app, rtgate.server.workers, rtgate.relay.endpoint\n"
        "import rtgate.migrate.cli, rtgate.migrate.check\n"
        "from rtgate.extras import EXTRAS\n"
        "print(sorted({m.split('.')[0] for ms in EXTRAS.values() for m in ms} & set(sys.modules)))\n"
        "from rtgate.server.app import preload_extras\n"
        "preload_extras()\n"  # start-up: the installed MCP client, off the first session's loop
        "print('mcp' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["[]", "True"]
