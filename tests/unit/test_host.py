"""The session host (server/host.py): what it refuses and how each entry point reports it,
what a ticket takes, and that a release gives it all back exactly once. No sockets."""

from __future__ import annotations

import asyncio
import math

import orjson

from rtgate.cluster import LocalStore, new_member
from rtgate.pipeline.responder import Pipeline
from rtgate.pipeline.scheduler import Scheduler
from rtgate.server.admission import Admission
from rtgate.server.drain import Drain
from rtgate.server.host import Refusal, SessionHost, Ticket
from rtgate.server.metrics import Metrics
from rtgate.server.node import Node
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeTTS


class Channel:
    """A session channel that keeps what it is given (the runner is never started here)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        pass


def local(limited: bool = True) -> Pipeline:
    return Pipeline("local", FakeLLM(), FakeTTS(), admission_limited=limited)


def host(*, max_sessions: int = 10, max_conversations: int = 10,
         key_max_sessions: int = 0) -> SessionHost:
    scheduler = Scheduler(clock=lambda: 0.0)
    metrics = Metrics(scheduler)
    admission = Admission(scheduler, max_conversations=max_conversations,
                          overload_late_s=math.inf, refused=metrics.sessions_refused)
    settings = Settings(max_sessions=max_sessions, key_max_sessions=key_max_sessions,
                        pipeline="builtin")
    node = Node("0badc0de")
    node.cluster = LocalStore(new_member("http://127.0.0.1:1"), clock=lambda: 0.0)
    return SessionHost(settings, None, admission, Drain(), node, metrics)


def refusals(h: SessionHost, reason: str) -> str:
    """The ``rtgate_sessions_refused_total`` sample for ``reason``, as /metrics renders it."""
    assert h.metrics is not None
    for line in h.metrics.registry.render().splitlines():
        if line.startswith(f'rtgate_sessions_refused_total{{reason="{reason}"}}'):
            return line.rsplit(" ", 1)[1]
    return "0"


def body(refusal: Refusal) -> dict[str, object]:
    response = refusal.response()
    parsed = orjson.loads(bytes(response.body))
    assert isinstance(parsed, dict)
    return parsed


async def ticket(h: SessionHost, pipeline: Pipeline | None = None, account: str = "acct") -> Ticket:
    admitted = await h.admit(account, pipeline)
    assert isinstance(admitted, Ticket), admitted
    return admitted


def test_a_ticket_holds_a_slot_until_it_is_released_once() -> None:
    async def run() -> None:
        h = host()
        first, second = await ticket(h), await ticket(h)
        assert h.active_sessions == 2
        await first.release()
        assert h.active_sessions == 1
        await first.release()  # a second release gives nothing back twice
        first.release_soon()
        assert h.active_sessions == 1
        second.release_soon()
        assert h.active_sessions == 0

    asyncio.run(run())


def test_a_slot_stays_taken_while_the_sessions_stragglers_run() -> None:
    async def run() -> None:
        h = host()
        admitted = await ticket(h)
        gate = asyncio.Event()
        straggler = asyncio.create_task(gate.wait())
        await admitted.release({straggler})
        assert h.active_sessions == 1  # the session's last task has not ended yet
        gate.set()
        await straggler
        await asyncio.sleep(0)  # done callbacks run one loop step after the task ends
        assert h.active_sessions == 0

    asyncio.run(run())


def test_max_sessions_refuses_with_server_busy_and_takes_nothing() -> None:
    async def run() -> None:
        h = host(max_sessions=1, key_max_sessions=1)
        held = await ticket(h, account="one")
        refusal = await h.admit("two", local())
        assert isinstance(refusal, Refusal)
        assert (refusal.error.type, refusal.error.code) == ("server_error", "server_busy")
        assert "limit of 1 sessions" in refusal.error.message
        assert (refusal.status, refusal.close_code, refusal.forwardable) == (503, 1013, False)
        assert "Retry-After" not in refusal.response().headers
        assert h.active_sessions == 1
        await held.release()
        assert isinstance(await h.admit("two", local()), Ticket)  # "two" took no key lease

    asyncio.run(run())


def test_a_draining_process_refuses_with_1012_and_names_what_it_refuses() -> None:
    h = host()
    h.drain.begin(30.0)
    refusal = h.check(local(), what="calls")
    assert refusal is not None
    assert (refusal.error.type, refusal.error.code) == ("server_error", "server_shutting_down")
    assert "it takes no new calls" in refusal.error.message
    assert (refusal.status, refusal.close_code) == (503, 1012)
    assert body(refusal)["error"] == {"message": refusal.error.message, "type": "server_error",
                                      "param": None, "code": "server_shutting_down"}


def test_full_conversations_refuse_local_limited_sessions_only_and_may_be_forwarded() -> None:
    async def run() -> None:
        h = host(max_conversations=1)
        talking = await ticket(h, local())
        runner = h.runner(talking, Channel(), local(), model="gpt-realtime", config=None,
                          transcription=False)
        runner.session.buffer.append(b"\x00" * 4800)  # it has started: a conversation
        refusal = h.check(local())
        assert refusal is not None and refusal.forwardable
        assert (refusal.error.code, refusal.status, refusal.close_code) == ("server_busy", 503, 1013)
        assert refusals(h, "capacity") == "1"
        assert h.check(local(limited=False)) is None  # a network profile does not count
        assert h.check(None) is None  # nor does a relayed session
        await talking.release()
        assert h.check(local()) is None  # the conversation's place is free again

    asyncio.run(run())


def test_a_key_over_its_limit_gets_429_with_retry_after_and_no_slot() -> None:
    async def run() -> None:
        h = host(key_max_sessions=1)
        held = await ticket(h)
        refusal = await h.admit("acct", local())
        assert isinstance(refusal, Refusal)
        assert (refusal.error.type, refusal.error.code) == ("rate_limit_error", "rate_limit_exceeded")
        assert (refusal.status, refusal.close_code) == (429, 1013)
        assert refusal.response().headers["Retry-After"] == str(math.ceil(refusal.retry_after_s or 0))
        assert h.active_sessions == 1
        assert refusals(h, "key_limit") == "1"
        held.release_soon()  # the lease goes back on its own task
        for _ in range(10):
            if isinstance(admitted := await h.admit("acct"), Ticket):
                break
            await asyncio.sleep(0)
        assert isinstance(admitted, Ticket)

    asyncio.run(run())


def test_the_runner_carries_the_servers_limits_and_the_release_bills_the_account() -> None:
    async def run() -> None:
        h = host()
        admitted = await ticket(h, local(), account="acct")
        runner = h.runner(admitted, Channel(), local(), model="gpt-realtime", config=None,
                          transcription=True, plays_audio=True)
        session = runner.session
        assert session.is_transcription and session.plays_audio
        assert session.id.startswith("sess_") and session.limits == h.settings.session.core_limits()
        assert admitted.sessions == [session]
        session.buffer.append(b"\x00" * 48_000)  # one second of 24 kHz PCM16
        await admitted.release()
        usage = (await h.node.cluster.usage())["acct"]
        assert usage["sessions"] == 1 and usage["audio_in_s"] == 1.0

    asyncio.run(run())


def test_a_relayed_ticket_is_billed_as_one_session_without_audio() -> None:
    async def run() -> None:
        h = host()
        admitted = await ticket(h, None, account="relayed")
        assert not admitted.limited
        await admitted.release()
        usage = (await h.node.cluster.usage())["relayed"]
        assert usage["sessions"] == 1 and usage["audio_in_s"] == 0

    asyncio.run(run())
