"""The relay policy (relay/policy.py) alone: a clock passed in, no socket, no event loop.

Each test states one rule of the answer deadline, the keepalive verdicts or the endings
that both data paths (parsed and spliced) carry out.
"""

from __future__ import annotations

from rtgate.protocol.errors import SERVER_ERROR, RealtimeError
from rtgate.relay.policy import NOT_READING_REASON, Ending, Keepalive, RelayPolicy
from rtgate.relay.upstream import RelayLimits

DEADLINE = 8.0
LIMITS = RelayLimits(answer_deadline_s=DEADLINE, ping_interval_s=5, ping_timeout_s=3,
                     client_ping_interval_s=20, client_ping_timeout_s=15, send_deadline_s=10)


def policy(now: float = 100.0) -> RelayPolicy:
    return RelayPolicy("az", LIMITS, now)


def assert_stalled(ending: Ending | None) -> None:
    assert ending is not None and ending.error is not None
    assert (ending.close_code, ending.error.code, ending.error.type) == (1011, "upstream_timeout", SERVER_ERROR)
    assert "'az' stalled" in ending.error.message and "8 s" in ending.error.message
    assert (ending.upstream_code, ending.upstream_reason) == (1000, "relay ended")


def test_session_created_is_owed_from_the_start() -> None:
    """A new session owes session.created: due answer_deadline_s after it opened."""
    p = policy(100.0)
    assert p.answer_due() == 100.0 + DEADLINE
    assert p.check_answer(107.9) is None
    assert_stalled(p.check_answer(108.0))


def test_an_answer_pays_the_debt_and_turns_the_deadline_off() -> None:
    """The first upstream message pays session.created; nothing owed, no deadline."""
    p = policy(100.0)
    p.answered(1, 100.5)
    assert p.owed == 0 and p.answer_due() is None
    assert p.check_answer(1_000.0) is None


def test_a_request_after_a_quiet_spell_starts_the_clock_at_the_request() -> None:
    """A request when nothing is owed: the upstream has the whole deadline from the request,
    not from its last message."""
    p = policy(100.0)
    p.answered(1, 101.0)
    p.requested(150.0)
    assert p.answer_due() == 150.0 + DEADLINE
    assert p.check_answer(157.0) is None


def test_a_second_request_does_not_push_the_deadline_back() -> None:
    """Requests while answers are owed add to the debt; only upstream progress moves the clock."""
    p = policy(100.0)
    p.answered(1, 100.0)
    p.requested(110.0)
    p.requested(115.0)
    assert p.owed == 2 and p.answer_due() == 110.0 + DEADLINE


def test_progress_while_owed_pushes_the_deadline_back() -> None:
    """Any upstream message while answers are owed is progress (unprompted events included)."""
    p = policy(100.0)
    p.requested(100.0)  # owed: session.created and this
    p.answered(1, 105.0)
    assert p.owed == 1 and p.answer_due() == 105.0 + DEADLINE
    assert p.check_answer(110.0) is None


def test_several_messages_pay_several_answers_never_below_zero() -> None:
    """Each upstream message pays one owed answer, oldest first; extra messages owe nothing."""
    p = policy(100.0)
    p.requested(100.0)
    p.answered(5, 101.0)
    assert p.owed == 0
    p.requested(102.0)
    assert p.owed == 1


def test_no_deadline_while_the_relay_waits_on_the_client() -> None:
    """Time spent waiting on a slow client is not the upstream's silence."""
    p = policy(100.0)
    p.client_blocked()
    assert p.answer_due() is None and p.check_answer(500.0) is None
    p.client_unblocked(500.0)
    assert p.answer_due() == 500.0 + DEADLINE


def test_a_request_while_the_client_blocks_starts_when_it_drains() -> None:
    """A request made while the relay waits on the client is timed from when it stops waiting."""
    p = policy(100.0)
    p.answered(1, 100.0)
    p.client_blocked()
    p.requested(120.0)
    assert p.answer_due() is None
    p.client_unblocked(130.0)
    assert p.answer_due() == 130.0 + DEADLINE


def test_a_close_ends_the_deadline_for_good() -> None:
    """Nothing is owed after a close frame, whichever side sent it."""
    p = policy(100.0)
    p.close_seen()
    p.requested(101.0)
    assert p.answer_due() is None and p.check_answer(1_000.0) is None


def test_a_timer_that_fires_a_hair_early_still_counts() -> None:
    """Timers may fire up to the clock's resolution early: a check that close is due."""
    p = policy(100.0)
    assert_stalled(p.check_answer(100.0 + DEADLINE - 0.0005))


def test_keepalive_intervals_and_timeouts_per_side() -> None:
    """The upstream is pinged per relay_ping_*, the spliced client per ping_*."""
    p = policy()
    assert (p.ping_interval(client=False), p.pong_timeout(client=False)) == (5, 3)
    assert (p.ping_interval(client=True), p.pong_timeout(client=True)) == (20, 15)


def test_a_missed_upstream_pong_ends_the_session_1011() -> None:
    """A silent upstream: upstream_timeout and 1011 to the client, 1011 to the upstream."""
    ending = policy().pong_missed(client=False)
    assert isinstance(ending, Ending) and ending.error is not None
    assert (ending.close_code, ending.error.code) == (1011, "upstream_timeout")
    assert "keepalive pings (3 s)" in ending.error.message
    assert (ending.upstream_code, ending.upstream_reason) == (1011, "keepalive ping timeout")


def test_a_missed_client_pong_drops_the_client() -> None:
    """A silent client is dropped (1011), as uvicorn drops one."""
    assert policy().pong_missed(client=True) is Keepalive.DROP_CLIENT


def test_no_pong_is_held_against_anyone_while_the_client_blocks() -> None:
    """While the relay waits on the client a pong may sit unread behind its data: wait more."""
    p = policy()
    p.client_blocked()
    assert p.pong_missed(client=False) is Keepalive.WAIT
    assert p.pong_missed(client=True) is Keepalive.WAIT


def test_a_client_that_stops_reading_gets_1008_and_no_error_event() -> None:
    """client_not_reading: 1008 with the local pipeline's reason; the upstream closed 1000."""
    ending = policy().not_reading()
    assert ending.client_stuck and ending.close_code == 1008 and ending.reason == NOT_READING_REASON
    assert ending.error is not None and ending.error.code == "client_not_reading"
    assert (ending.upstream_code, ending.upstream_reason) == (1000, "client not reading")


def test_the_upstreams_close_code_passes_to_the_client() -> None:
    """An upstream close code and reason reach the client as sent; 1005 (none) is 1000."""
    p = policy()
    assert p.upstream_closed((4000, "invalid_request_error.x")) == Ending(4000, "invalid_request_error.x")
    assert p.upstream_closed((1005, "")).close_code == 1000


def test_an_unsendable_close_or_none_is_a_lost_connection() -> None:
    """1006/1015 or no close frame: upstream_connection_lost, 1011; a lost keepalive when
    the upstream's client side timed out a ping."""
    p = policy()
    for close in ((1006, ""), (1015, ""), None):
        ending = p.upstream_closed(close)
        assert ending.error is not None and ending.error.code == "upstream_connection_lost"
        assert ending.close_code == 1011
    timed_out = p.upstream_closed(None, ping_timed_out=True)
    assert timed_out.error is not None and "keepalive" in timed_out.error.message


def test_protocol_errors_by_side() -> None:
    """A client that breaks RFC 6455 is closed with the code; an upstream that does is a fault."""
    p = policy()
    client = p.protocol_error(client=True, close_code=1009, reason="frame too big")
    assert (client.close_code, client.by_client, client.error) == (1009, True, None)
    assert client.upstream_reason == "client disconnected"
    upstream = p.protocol_error(client=False, close_code=1002, reason="bad mask")
    assert upstream.error is not None and upstream.error.code == "upstream_connection_lost"
    assert (upstream.close_code, upstream.upstream_code, upstream.upstream_reason) == (1011, 1002, "bad mask")


def test_the_drain_closes_1012_and_tells_the_upstream_going_away() -> None:
    """Server shutdown: the drain's error and 1012 to the client, 1001 to the upstream."""
    error = RealtimeError("The server is shutting down.", "server_shutting_down", type=SERVER_ERROR)
    ending = RelayPolicy.shut_down(error)
    assert (ending.close_code, ending.error, ending.upstream_code) == (1012, error, 1001)
    assert RelayPolicy.server_closing().error is None


def test_a_client_that_leaves_closes_the_upstream_1000() -> None:
    """The client disconnected: no close to it; the upstream gets 1000 client disconnected."""
    ending = Ending.client_left()
    assert ending.by_client and (ending.upstream_code, ending.upstream_reason) == (1000, "client disconnected")
