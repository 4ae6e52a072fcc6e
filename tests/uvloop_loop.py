"""pytest plugin: run the suite's event loops on uvloop (``--loop auto`` picks it where installed).

    pip install uvloop && python -m pytest -p tests.uvloop_loop

pytest-asyncio tests get uvloop through its loop-factory hook; code that calls
``asyncio.run()`` itself gets it through the global policy; servers that tests start in a
subprocess pick it by ``--loop auto``. Not loaded by default: uvloop is not a dependency.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    return {"uvloop": uvloop.new_event_loop}
