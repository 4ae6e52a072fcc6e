"""The uvicorn and Starlette internals rtgate's server relies on are there (server/uvicorn_contract.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import uvicorn

from rtgate.server import uvicorn_contract
from rtgate.server.settings import Settings
from rtgate.server.ws_protocol import uvicorn_ws_options

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_uvicorn_has_every_internal_used() -> None:
    assert uvicorn_contract.missing() == []
    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(".")[:2])

    assert version(uvicorn.__version__) >= version(uvicorn_contract.MIN_UVICORN)


def test_pyproject_requires_the_first_uvicorn_that_has_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"uvicorn>={uvicorn_contract.MIN_UVICORN}" in project["dependencies"]


def test_a_missing_internal_stops_start_up_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a uvicorn that renamed ``read_paused`` would get: a clear error, not a crash on
    the first message."""
    monkeypatch.setattr(uvicorn_contract, "WS_STATE", (*uvicorn_contract.WS_STATE, "renamed_state"))
    uvicorn_contract.check.cache_clear()
    try:
        with pytest.raises(uvicorn_contract.UvicornInternalsChanged,
                           match=r"lacks internals rtgate relies on: WebSocketsSansIOProtocol\.renamed_state\. "
                                 r"Install a uvicorn >= 0\.53"):
            uvicorn_ws_options(Settings())
    finally:
        uvicorn_contract.check.cache_clear()
