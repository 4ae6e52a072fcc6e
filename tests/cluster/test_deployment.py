"""Three rtgate nodes, a real Redis and a real HAProxy on loopback (issue 12).

Each node is ``rtgate serve --pipeline builtin --redis-url …`` in its own process; HAProxy
balances them (``leastconn``, health checks on ``/readyz``). The official SDK is the client.
Covered: text and spoken turns through HAProxy; a WebRTC call made on node A steered and
hung up through node B; a per-key session limit across nodes; a node killed with SIGKILL
under load; a node drained with SIGTERM under load; Redis restarted under load.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from rtgate.testing.validate import validate_server_event

from .conftest import REDIS_SERVER, RedisServer, free_port

pytestmark = pytest.mark.e2e

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
KEY = "sk-cluster"
ADMIN = "admin-cluster"
HEARTBEAT_S = 0.3
DRAIN_S = 4.0


@dataclass
class NodeProcess:
    name: str
    port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rtgate.cli", "serve", "--pipeline", "builtin",
                 "--port", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=sink, env=self.env)

    def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a start-up condition with a deadline
        raise AssertionError(f"{self.name} never became ready:\n{self.log.read_text()[-3000:]}")

    def node_id(self) -> str:
        return str(httpx.get(f"{self.url}/healthz", timeout=2).json()["node"])


@dataclass
class Deployment:
    redis: RedisServer
    nodes: list[NodeProcess]
    lb_port: int
    haproxy: subprocess.Popen[bytes]
    workdir: Path
    extra: list[Any] = field(default_factory=list)

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"


def _haproxy_config(lb_port: int, nodes: list[NodeProcess]) -> str:
    servers = "\n".join(
        f"    server {n.name} 127.0.0.1:{n.port} check inter 200ms fall 1 rise 1" for n in nodes)
    return f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend realtime
    bind 127.0.0.1:{lb_port}
    default_backend rtgate
backend rtgate
    balance leastconn
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh --test installs it)")
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (scripts/setup.sh --test installs it)")
    workdir = tmp_path_factory.mktemp("deployment")
    redis = RedisServer(workdir)
    redis.start()
    env = {**os.environ, "RTGATE_API_KEYS": KEY, "RTGATE_ADMIN_KEYS": ADMIN,
           "RTGATE_REDIS_URL": redis.url, "RTGATE_CLUSTER_HEARTBEAT_S": str(HEARTBEAT_S),
           "RTGATE_DRAIN_TIMEOUT_S": str(DRAIN_S), "RTGATE_KEY_MAX_SESSIONS": "0",
           "RTGATE_ADVERTISE_HOST": "127.0.0.1"}
    nodes = [NodeProcess(name, free_port(), workdir / f"{name}.log", env) for name in "abc"]
    for node in nodes:
        node.start()
    lb_port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(_haproxy_config(lb_port, nodes))
    haproxy = subprocess.Popen([str(HAPROXY), "-f", str(config), "-db"],
                               stdout=(workdir / "haproxy.log").open("ab"), stderr=subprocess.STDOUT)
    deployment = Deployment(redis, nodes, lb_port, haproxy, workdir)
    try:
        for node in nodes:
            node.wait_ready()
        yield deployment
    finally:
        haproxy.terminate()
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(10)
        haproxy.wait(10)
        redis.stop()


def _client(url: str, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)


async def _events_until(conn: Any, type_: str, within: float = 20.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not out or out[-1]["type"] != type_:
            event = json.loads(await conn.recv_bytes())
            validate_server_event(event)
            out.append(event)
    return out


async def _text_turn(url: str, text: str) -> dict[str, Any]:
    """One text turn; a session closed with 1012/1013 (a node draining or busy, which the
    balancer has not taken out yet) is tried again, as a client with reconnection does."""
    for attempt in range(5):
        try:
            async with _client(url).realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                await conn.conversation.item.create(item={
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
                await conn.response.create()
                return (await _events_until(conn, "response.done"))[-1]
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code not in (1012, 1013) or attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))  # the SDK's reconnection backs off too
    raise AssertionError("unreachable")


def _speech() -> bytes:
    """A spoken sentence (espeak-ng, 24 kHz PCM16) and a second of silence."""
    from rtgate.pipeline.base import SpeechRequest
    from rtgate.pipeline.engines.espeak import EspeakTTS

    async def synth() -> bytes:
        tts = EspeakTTS()
        return b"".join([c async for c in tts.synthesize(SpeechRequest("what time is it", voice="alloy"))])

    return asyncio.run(synth()) + np.zeros(24_000, dtype=np.int16).tobytes()


async def _get(url: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url, headers=headers)


async def _wait(condition: Any, within: float, what: str) -> None:
    """Poll the async ``condition`` across processes until true, with a deadline."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _status(url: str) -> int:
    return (await _get(url)).status_code


async def _members(deployment: Deployment, via: str | None = None) -> set[str]:
    answer = await _get(f"{via or deployment.lb_url}/admin/usage", ADMIN)
    assert answer.status_code == 200, answer.text
    return {m["id"] for m in answer.json()["members"]}


async def test_text_and_spoken_turns_through_haproxy_and_usage_summed_across_nodes(
        deployment: Deployment) -> None:
    before = (await _get(f"{deployment.lb_url}/admin/usage", ADMIN)).json()
    done = await asyncio.gather(*(_text_turn(deployment.lb_url, f"question {n}") for n in range(6)))
    assert all(d["response"]["status"] == "completed" for d in done)

    speech = await asyncio.to_thread(_speech)
    async with _client(deployment.lb_url).realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}})
        for start in range(0, len(speech), 4800):  # 100 ms appends
            await conn.input_audio_buffer.append(audio=__import__("base64").b64encode(
                speech[start:start + 4800]).decode())
        events = await _events_until(conn, "response.done", within=30)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.speech_stopped" in kinds
    assert "response.output_audio.delta" in kinds

    async def sessions_counted() -> bool:
        after = (await _get(f"{deployment.lb_url}/admin/usage", ADMIN)).json()
        total = {a["account"]: a["sessions"] for a in after["accounts"]}
        start = {a["account"]: a["sessions"] for a in before["accounts"]}
        return sum(total.values()) - sum(start.values()) >= 7  # published at the next beats

    await _wait(sessions_counted, 10, "the 7 sessions never showed in the cluster's usage")
    assert len(await _members(deployment)) == 3
    metrics = [(await _get(f"{n.url}/metrics", KEY)).text for n in deployment.nodes]
    assert all("rtgate_redis_reachable 1" in m and "rtgate_cluster_members 3" in m for m in metrics)


async def test_webrtc_call_on_node_a_is_steered_and_hung_up_through_node_b(deployment: Deployment) -> None:
    from tests.webrtc.conftest import require_ice_host
    from tests.webrtc.peer import BrowserPeer

    require_ice_host()
    a, b = deployment.nodes[0], deployment.nodes[1]
    peer = BrowserPeer()
    try:
        raw = await _client(a.url).realtime.calls.with_raw_response.create(
            sdp=await peer.offer(), session={"type": "realtime", "model": "gpt-realtime",
                                             "output_modalities": ["text"]})  # type: ignore[arg-type]
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        assert call_id.startswith(f"rtc_{a.node_id()}")
        await peer.accept(raw.http_response.text)
        await peer.until("session.created")
        async with _client(b.url).realtime.connect(call_id=call_id) as sideband:
            await _events_until(sideband, "session.created")
            await sideband.session.update(session={"type": "realtime", "instructions": "Be terse."})
            updated = (await _events_until(sideband, "session.updated"))[-1]
            assert updated["session"]["instructions"] == "Be terse."
            assert (await peer.until("session.updated"))[-1]["session"]["instructions"] == "Be terse."
        hung = await _client(b.url).post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
        assert hung.status_code == 200
    finally:
        await peer.close()


async def test_per_key_session_limit_holds_across_nodes(deployment: Deployment) -> None:
    # A fresh key (any key counts under its own account) limited to 2 sessions at once,
    # through nodes that each only know their own sessions: the limit is in Redis.
    limited = [NodeProcess(f"limited-{n}", free_port(), deployment.workdir / f"limited-{n}.log",
                           {**deployment.nodes[0].env, "RTGATE_KEY_MAX_SESSIONS": "2"}) for n in range(2)]
    for node in limited:
        node.start()
    try:
        for node in limited:
            node.wait_ready()
        first, second = limited
        async with _client(first.url).realtime.connect(model="gpt-realtime") as one, \
                _client(second.url).realtime.connect(model="gpt-realtime") as two:
            await _events_until(one, "session.created")
            await _events_until(two, "session.created")
            async with _client(second.url).realtime.connect(model="gpt-realtime") as three:
                refused = (await _events_until(three, "error"))[-1]
            assert refused["error"]["type"] == "rate_limit_error"
            assert refused["error"]["code"] == "rate_limit_exceeded"
            assert "2 sessions at once" in refused["error"]["message"]
        # Both closed: a slot is free again, on either node.
        async def admitted() -> bool:
            async with _client(first.url).realtime.connect(model="gpt-realtime") as again:
                return (await _events_until(again, "session.created"))[-1]["type"] == "session.created"

        assert await admitted()
    finally:
        for node in limited:
            assert node.proc is not None
            node.proc.kill()
            node.proc.wait(10)


async def test_a_node_killed_under_load_leaves_the_others_untouched(deployment: Deployment) -> None:
    a, _, c = deployment.nodes
    on_a = [_client(a.url).realtime.connect(model="gpt-realtime") for _ in range(3)]
    conns_a = [await m.__aenter__() for m in on_a]
    victim_id = c.node_id()
    victim = await _client(c.url).realtime.connect(model="gpt-realtime").__aenter__()
    await _events_until(victim, "session.created")
    try:
        for conn in conns_a:
            await _events_until(conn, "session.created")
        assert c.proc is not None
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        with pytest.raises((openai.OpenAIError, websockets.ConnectionClosed)):  # its client sees it go
            await _events_until(victim, "never", within=10)
        # The others keep answering.
        for conn in conns_a:
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "still here"}]})
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await conn.response.create()
            assert (await _events_until(conn, "response.done"))[-1]["response"]["status"] == "completed"
        # Its membership expires within 3 heartbeats; a sideband for a call it held is told so.
        async def left() -> bool:
            return victim_id not in await _members(deployment)

        await _wait(left, 3 * HEARTBEAT_S + 5, "killed node still a member")
        async with _client(a.url).realtime.connect(call_id=f"rtc_{victim_id}{'0' * 24}") as sideband:
            error = (await _events_until(sideband, "error"))[-1]
        assert error["error"]["code"] == "call_not_found" and "no longer running" in error["error"]["message"]
        # New sessions through HAProxy go to the living nodes.
        assert (await _text_turn(deployment.lb_url, "after the kill"))["response"]["status"] == "completed"
    finally:
        for m in on_a:
            await m.__aexit__(None, None, None)
        c.start()
        c.wait_ready()


async def test_a_node_drained_under_load_finishes_its_sessions_and_the_balancer_moves_on(
        deployment: Deployment) -> None:
    b = deployment.nodes[1]
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"ws://127.0.0.1:{b.port}/v1/realtime?model=gpt-realtime"
    live = [await websockets.connect(url, additional_headers=headers, proxy=None) for _ in range(3)]
    try:
        for ws in live:
            assert json.loads(await ws.recv())["type"] == "session.created"
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        async def draining() -> bool:
            return await _status(f"{b.url}/readyz") == 503

        await _wait(draining, 5, "readyz never said draining")
        # Within the drain window every live session still completes a response.
        for ws in live:
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"]}}))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
        for ws in live:
            while (event := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "response.done":
                pass
            assert event["response"]["status"] == "completed"
        # HAProxy has taken the node out: new sessions through it are all served.
        turns = await asyncio.gather(*(_text_turn(deployment.lb_url, f"during drain {n}") for n in range(4)))
        assert all(t["response"]["status"] == "completed" for t in turns)
        # At the deadline: the error, then 1012; the process exits.
        for ws in live:
            while (event := json.loads(await asyncio.wait_for(ws.recv(), DRAIN_S + 10)))["type"] != "error":
                pass
            assert event["error"]["code"] == "server_shutting_down"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1012
        b.proc.wait(30)
    finally:
        for ws in live:
            await ws.close()
        b.start()
        b.wait_ready()


async def test_redis_restart_under_load_keeps_sessions_and_recovers(deployment: Deployment) -> None:
    a = deployment.nodes[0]
    async with _client(a.url).realtime.connect(model="gpt-realtime") as conn:
        await _events_until(conn, "session.created")
        deployment.redis.stop()

        async def unreachable() -> bool:
            return bool((await _get(f"{a.url}/readyz")).json().get("redis") == "unreachable")

        await _wait(unreachable, 5, "readyz never noticed the Redis outage")
        # Still ready: every node would be unready at once otherwise, and the balancer
        # would refuse all new sessions although the nodes can serve them.
        assert await _status(f"{a.url}/readyz") == 200
        assert "rtgate_redis_reachable 0" in (await _get(f"{a.url}/metrics", KEY)).text
        # The running session goes on; new ones are admitted (limits fail open).
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "redis is down"}]})
        await conn.response.create()
        assert (await _events_until(conn, "response.done"))[-1]["response"]["status"] == "completed"
        assert (await _text_turn(a.url, "new while down"))["response"]["status"] == "completed"
        assert (await _text_turn(deployment.lb_url, "through the balancer"))["response"]["status"] == "completed"
        deployment.redis.start()

        async def reachable() -> bool:
            return bool((await _get(f"{a.url}/readyz")).json().get("redis") == "reachable")

        async def all_members() -> bool:
            return len(await _members(deployment, via=a.url)) == 3

        await _wait(reachable, 10, "never recovered from the outage")
        await _wait(all_members, 10, "members did not re-register")
