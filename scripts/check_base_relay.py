"""A relay started from the base install (no extras) carries a text turn: scripts/check-plain-install.sh.

Usage: ``.venv/bin/python scripts/check_base_relay.py BASE_VENV/bin/rtgate``

Runs two ``rtgate serve --pipeline builtin`` processes of the base install on loopback: an
echo upstream (the builtin echo model, API key required) and a gateway whose config file
routes ``gpt-realtime*`` to it. The official ``openai`` SDK (from the test venv running
this script, never from the base venv) connects to the gateway; every server event it
gets is validated strictly against the SDK's models, the turn must complete with the
echo of the prompt, and the gateway's ``/metrics`` must count one relayed session.
Exit 0 when all of that holds; 1 with the reason and both servers' log tails otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

from rtgate.testing.validate import validate_server_event

UPSTREAM_KEY = "upstream-key-plain-install"
CLIENT_KEY = "client-key-plain-install"
KEY_ENV = "RTGATE_PLAIN_UPSTREAM_KEY"
START_S = 30.0
EVENT_S = 10.0

CONFIG = """
[upstreams.echo]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "{key_env}"

[[routes]]
model = "gpt-realtime*"
upstream = "echo"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(rtgate: str, port: int, key: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTGATE_")}
    env.update({"RTGATE_API_KEYS": key, KEY_ENV: UPSTREAM_KEY})
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - the rtgate of the venv under test
            [rtgate, "serve", "--pipeline", "builtin", "--port", str(port), *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )


def wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    """Poll ``/readyz`` until 200 (the server's own readiness), or fail on exit/timeout."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a condition, not ordering events
    raise RuntimeError(f"the server on port {port} was not ready within {START_S} s")


async def text_turn(gateway: int) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{gateway}/v1", api_key=CLIENT_KEY)
    async with client.realtime.connect(model="gpt-realtime") as conn:

        async def until(kind: str) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["type"] != kind:
                event = json.loads(await asyncio.wait_for(conn.recv_bytes(), EVENT_S))
                validate_server_event(event)
                if event["type"] == "error":
                    raise RuntimeError(f"error event: {event['error']}")
                seen.append(event)
            return seen

        await until("session.created")
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await until("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hello through the relay"}]})
        await conn.response.create()
        return await until("response.done")


def relayed_sessions(gateway: int) -> float:
    reply = httpx.get(f"http://127.0.0.1:{gateway}/metrics", timeout=5.0,
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    reply.raise_for_status()
    text = reply.text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rtgate_relay_sessions_total"))


def main(rtgate: str) -> int:
    with tempfile.TemporaryDirectory(prefix="rtgate-relay-") as tmp:
        up_port, gw_port = free_port(), free_port()
        config = Path(tmp) / "relay.toml"
        config.write_text(CONFIG.format(port=up_port, key_env=KEY_ENV))
        logs = {"upstream": Path(tmp) / "upstream.log", "gateway": Path(tmp) / "gateway.log"}
        procs = [start(rtgate, up_port, UPSTREAM_KEY, logs["upstream"])]
        try:
            procs.append(start(rtgate, gw_port, CLIENT_KEY, logs["gateway"], "--config", str(config)))
            wait_ready(procs[0], up_port)
            wait_ready(procs[1], gw_port)
            events = asyncio.run(text_turn(gw_port))
            response = events[-1]["response"]
            text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
            if response["status"] != "completed" or "hello through the relay" not in text:
                raise RuntimeError(f"turn {response['status']}, text {text!r}")
            if relayed_sessions(gw_port) < 1:
                raise RuntimeError("the gateway's /metrics counts no relayed session")
        except Exception as exc:
            print(f"relay from the base install: {type(exc).__name__}: {exc}")
            for name, log in logs.items():
                if log.exists():
                    print(f"--- {name} log (tail)\n" + "\n".join(log.read_text().splitlines()[-15:]))
            return 1
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(f"relay from the base install: a text turn went through ({len(events)} events, all valid)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
