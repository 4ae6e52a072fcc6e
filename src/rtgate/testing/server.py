"""A real rtgate server on 127.0.0.1 for tests: :func:`running_server`.

The server runs in its own thread and event loop (as it would in its own process), on an
ephemeral port, and is shut down when the context exits. Usable from sync and async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from ..pipeline.base import STT, VAD
from ..pipeline.responder import Pipeline
from ..server.app import create_app, default_vad
from ..server.node import Node
from ..server.settings import Settings
from ..server.ws_protocol import uvicorn_ws_options
from .fakes import FakeLLM, FakeTTS


@dataclass(frozen=True)
class ServerHandle:
    host: str
    port: int
    settings: Settings

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``base_url`` for ``AsyncOpenAI``: ``http://127.0.0.1:PORT/openai/v1``."""
        return f"{self.http_url}/openai/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def fake_profiles(
    llm: FakeLLM | None = None, tts: FakeTTS | None = None, stt: STT | None = None
) -> Callable[[Settings], dict[str, Pipeline]]:
    def build(settings: Settings) -> dict[str, Pipeline]:
        return {"default": Pipeline("fake", llm or FakeLLM(), tts or FakeTTS(), stt)}

    return build


@contextlib.contextmanager
def running_server(
    settings: Settings | None = None,
    *,
    profiles: Callable[[Settings], dict[str, Pipeline]] | None = None,
    vad_factory: Callable[[], VAD | None] = default_vad,
    startup_timeout_s: float = 120.0,
    node: Node | None = None,
) -> Iterator[ServerHandle]:
    """Run rtgate on 127.0.0.1:<ephemeral>; yields a :class:`ServerHandle`.

    ``profiles`` defaults to fake backends (deterministic echo + tones); pass
    ``rtgate.server.app.build_profiles`` for the real configured stack. ``node`` makes
    the server one process of a deployment (server/node.py): tests fill in its ``url``
    and ``peers`` once the ports are known.
    """
    settings = (settings or Settings()).replace(host="127.0.0.1", port=0)
    app = create_app(settings, profiles=profiles or fake_profiles(), vad_factory=vad_factory,
                     node=node)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        **uvicorn_ws_options(settings),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def serve() -> None:
            try:
                await server.serve()
            except BaseException as exc:  # surfaced to the test below
                failure.append(exc)
            finally:
                started.set()

        async def watch() -> None:
            task = asyncio.create_task(serve())
            # uvicorn has no start-up callback; poll its flag (a start-up wait, not ordering).
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            started.set()
            await task

        loop.run_until_complete(watch())

    thread = threading.Thread(target=run, name="rtgate-test-server", daemon=True)
    thread.start()
    if not started.wait(startup_timeout_s) or failure or not server.started:
        server.should_exit = True
        thread.join(10)
        raise RuntimeError(f"rtgate test server did not start: {failure!r}")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield ServerHandle("127.0.0.1", port, settings)
    finally:
        server.should_exit = True
        thread.join(30)
