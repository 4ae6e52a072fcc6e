"""A bounded fuzzer for Realtime client events, GA and Preview (issue 17).

Each fuzzed frame is a valid client event of the chosen dialect with one or more
mutations — a value replaced by another JSON type (lists and objects where strings are
expected, out-of-range numbers, long strings), a key removed or added, a ``type`` changed,
or the frame made invalid JSON or not an object. After each frame the fuzzer sends a
*probe* (``conversation.item.retrieve`` of an item that does not exist), whose ``error``
answer marks the end of the server's reaction to the frame. It checks:

* the session stays alive: every probe is answered and the socket is never closed;
* every ``error`` event is spec-shaped (GA: validated strictly against the official SDK's
  models; Preview: the error object's fields and types) and carries the ``event_id`` of
  the frame that caused it — the client's, when the frame had a string one;
* tracebacks are the caller's to watch: a test attaches a log handler to the server it
  runs (``tests/e2e/test_fuzz.py``); from the command line, read the server's log.

Short runs are part of the test suite; long ones run on demand::

    python -m rtgate.testing.fuzz ws://127.0.0.1:8000 --dialect preview --events 50000

The frames depend only on ``--seed``, so a failure can be replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

DIALECTS = ("ga", "preview")
PROBE_ITEM = "item_fuzz_probe_missing"
ANSWER_TIMEOUT_S = 30.0
"""Longest the server may take to answer a probe before the session counts as hung."""

_TEXT = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
_CALL_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "{}"}
_TOOL = {"type": "function", "name": "lookup", "description": "d",
         "parameters": {"type": "object", "properties": {}}}


def corpus(dialect: str) -> list[Event]:
    """Valid client events of ``dialect``: the seeds every fuzzed frame starts from."""
    common: list[Event] = [
        {"type": "input_audio_buffer.append", "audio": "AAAAAAAA"},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": copy.deepcopy(_TEXT)},
        {"type": "conversation.item.create", "item": copy.deepcopy(_CALL_OUTPUT)},
        {"type": "conversation.item.retrieve", "item_id": "item_1"},
        {"type": "conversation.item.delete", "item_id": "item_1"},
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
         "audio_end_ms": 10},
        {"type": "response.cancel"},
    ]
    if dialect == "ga":
        return [
            *common,
            {"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "instructions": "x",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": {"type": "server_vad", "threshold": 0.5}},
                          "output": {"voice": "alloy", "speed": 1.0}},
                "tools": [copy.deepcopy(_TOOL)], "tool_choice": "auto",
                "max_output_tokens": 64}},
            {"type": "response.create", "response": {
                "output_modalities": ["text"], "instructions": "x", "max_output_tokens": 8,
                "conversation": "none", "metadata": {"k": "v"},
                "input": [copy.deepcopy(_TEXT), {"type": "item_reference", "id": "item_1"}]}},
            {"type": "output_audio_buffer.clear"},
        ]
    return [
        *common,
        {"type": "session.update", "session": {
            "modalities": ["text"], "instructions": "x", "voice": "alloy",
            "input_audio_format": "pcm16", "output_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
            "tools": [{k: v for k, v in _TOOL.items() if k != "type"}],
            "tool_choice": "lookup", "temperature": 0.8, "max_response_output_tokens": "inf"}},
        {"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "gpt-4o-transcribe"},
            "turn_detection": {"type": "semantic_vad", "eagerness": "low"}}},
        {"type": "response.create", "response": {
            "modalities": ["text"], "instructions": "x", "max_output_tokens": 8,
            "conversation": "none",
            "input": [{"type": "message", "role": "assistant",
                       "content": [{"type": "text", "text": "a"}]},
                      {"type": "item_reference", "id": "item_1"}]}},
        {"type": "conversation.item.create", "item": {
            "type": "message", "role": "assistant", "content": [{"type": "audio", "transcript": "a"}]}},
    ]


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards the shapes that break code expecting a string."""
    kind = rng.randrange(12 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**63, 2**64 + 1, 10**30, -10**30])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 3.4e38, 1e-300])
    if kind == 4:
        return rng.choice(["", "x", "session.update", "audio/pcm", "server_vad", "text",
                           "input_text", "\u0000", "\ud7ff" * 3, "QUJD=", "é" * 50])
    if kind == 5:
        return "A" * rng.choice([1000, 70_000])
    if kind == 6:
        return rng.choice([[], {}])
    if kind in (7, 8, 9):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    return {rng.choice(["type", "id", "text", "x", "model"]): _value(rng, depth + 1)
            for _ in range(rng.randrange(1, 4))}


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out += _paths(child, (*path, index))
    return out


def _parent(event: Any, path: tuple[Any, ...]) -> Any:
    node = event
    for step in path[:-1]:
        node = node[step]
    return node


def mutate(event: Event, rng: random.Random) -> Event:
    """``event`` with 1–3 mutations; the ``type`` fields are favoured targets."""
    out = copy.deepcopy(event)
    for _ in range(rng.randrange(1, 4)):
        paths = _paths(out)
        if not paths:
            break
        typed = [p for p in paths if p[-1] == "type"]
        path = rng.choice(typed) if typed and rng.random() < 0.4 else rng.choice(paths)
        parent = _parent(out, path)
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict) and path != ("type",):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[rng.choice(["x", "extra", "type", "event_id"])] = _value(rng)
        else:
            parent[path[-1]] = _value(rng)
    return out


def frames(dialect: str, count: int, seed: int = 0) -> list[tuple[str, str | None]]:
    """``count`` fuzzed frames: the text to send and the ``event_id`` an error must carry
    (``None`` when the frame has no string ``event_id``)."""
    rng = random.Random(seed)
    seeds = corpus(dialect)
    out: list[tuple[str, str | None]] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.03:
            out.append((rng.choice(["{", "[]", "null", "1", '"x"', "{}", '{"type":1}',
                                    '{"type":"session.update"'] ), None))
            continue
        event = copy.deepcopy(rng.choice(seeds))
        event["event_id"] = f"evt_fuzz_{n}"
        if roll > 0.1:
            event = mutate(event, rng)
        event_id = event.get("event_id")
        try:
            text = json.dumps(event)
        except ValueError:
            continue
        out.append((text, event_id if isinstance(event_id, str) else None))
    return out


@dataclass
class FuzzReport:
    sent: int = 0
    errors: int = 0
    reconnects: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(message)


def check_error_shape(event: Event) -> str | None:
    """What is wrong with an ``error`` event's shape (``None``: nothing)."""
    error = event.get("error")
    if not isinstance(error, dict):
        return "no error object"
    if not isinstance(error.get("type"), str) or not isinstance(error.get("message"), str):
        return f"error.type/message not strings: {error!r:.200}"
    for key in ("code", "param", "event_id"):
        if error.get(key) is not None and not isinstance(error.get(key), str):
            return f"error.{key} not a string or null: {error!r:.200}"
    if len(error["message"]) > 2000:
        return f"error.message of {len(error['message'])} characters"
    return None


async def fuzz_session(
    url: str,
    dialect: str,
    items: list[tuple[str, str | None]],
    *,
    key: str = "sk-fuzz",
    validate: Callable[[Event], Any] | None = None,
    report: FuzzReport | None = None,
) -> FuzzReport:
    """Send ``items`` (from :func:`frames`) over one session, reconnecting if the server
    closes it (each close is a failure); see the module docstring for the checks.
    ``validate`` checks every server event (GA: ``rtgate.testing.validate``)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    report = report or FuzzReport()
    headers = {"Authorization": f"Bearer {key}"}
    if dialect == "preview":
        headers["OpenAI-Beta"] = "realtime=v1"
    index = 0
    while index < len(items):
        async with connect(url, additional_headers=headers, max_size=None, compression=None,
                           proxy=None) as ws:
            try:
                while index < len(items):
                    text, event_id = items[index]
                    index += 1
                    report.sent += 1
                    await _one(ws, text, event_id, index, validate, report)
            except ConnectionClosed as exc:
                report.reconnects += 1
                report.fail(f"frame {index}: session closed ({exc.rcvd}) after {items[index - 1][0]:.300}")
            except TimeoutError:
                report.fail(f"frame {index}: no answer to the probe within {ANSWER_TIMEOUT_S} s "
                            f"after {items[index - 1][0]:.300}")
                return report
    return report


async def _one(ws: Any, text: str, event_id: str | None, index: int,
               validate: Callable[[Event], Any] | None, report: FuzzReport) -> None:
    probe_id = f"evt_probe_{index}"
    await ws.send(text)
    await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": PROBE_ITEM,
                              "event_id": probe_id}))
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            event = json.loads(await ws.recv())
            if validate is not None:
                try:
                    validate(event)
                except Exception as exc:
                    report.fail(f"frame {index}: invalid server event {str(exc)[:300]}")
            if event.get("type") != "error":
                continue
            problem = check_error_shape(event)
            if problem:
                report.fail(f"frame {index}: {problem}")
                continue
            got = event["error"].get("event_id")
            if got == probe_id:
                return
            report.errors += 1
            if event_id is not None and got != event_id and event["error"].get("type") != "server_error":
                report.fail(f"frame {index}: error carries event_id {got!r}, expected {event_id!r}: "
                            f"{event['error']!r:.300} for {text:.300}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtgate.testing.fuzz",
        description="Fuzz a running rtgate (or any Realtime server) with mutated client events "
        "and check that every session survives and every error is spec-shaped with the "
        "client's event_id. Watch the server's log for tracebacks.")
    parser.add_argument("url", help="server base, e.g. ws://127.0.0.1:8000")
    parser.add_argument("--dialect", choices=DIALECTS, default="ga")
    parser.add_argument("--events", type=int, default=1000, help="fuzzed frames (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="gpt-realtime",
                        help="model to connect to (a relayed one fuzzes the relay)")
    parser.add_argument("--key", default="sk-fuzz", help="API key (default sk-fuzz)")
    args = parser.parse_args(argv)
    validate: Callable[[Event], Any] | None = None
    if args.dialect == "ga":
        from .validate import validate_server_event

        validate = validate_server_event
    url = f"{args.url.rstrip('/')}/v1/realtime?model={args.model}"
    items = frames(args.dialect, args.events, args.seed)
    report = asyncio.run(fuzz_session(url, args.dialect, items, key=args.key, validate=validate))
    print(f"{report.sent} frames, {report.errors} error events, {report.reconnects} closed sessions, "
          f"{len(report.failures)} failures")
    for failure in report.failures:
        print("  " + failure)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
