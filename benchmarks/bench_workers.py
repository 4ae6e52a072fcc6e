"""Sessions per host: ``rtgate serve --workers 2`` against ``--workers 1`` (issue 12).

    python benchmarks/bench_workers.py [--quick] [--kinds listen,relay] [--workers 1,2]
        [--client-procs 1] [--server-cpus LIST] [--client-cpus LIST]

For each session kind, the same build on the same machine is ramped against a fresh
``rtgate serve --pipeline builtin --config … --workers W`` for W = 1, then W = 2, back to
back; each ramp searches for the largest N (concurrent sessions) that passes the kind's
criterion, and the ratio of the two is the answer to "sessions per host".

Kinds:

* **listen** — ``bench_load.py --no-responses`` sessions: ``session.update`` with
  ``server_vad`` and ``create_response: false`` (no transcription), then 24 kHz PCM16 in
  20 ms chunks on an absolute real-time schedule (bench_load's speech clip, its pacing
  phases, its lag definition: event receive time − send time of the chunk holding the
  deciding VAD frame's last sample). Pass: speech-event lag p99 < 50 ms, no VAD drop
  warning in the server log, no error event, no session lost.
* **relay** — sessions routed (``[upstreams.echo]`` + ``[[routes]] model = "bench-*"``) to
  bench_relay.py's echo upstream, which runs in its own process: each session streams
  20 ms appends in real time and the upstream answers each with a delta carrying the same
  audio, so 24 kHz audio flows both ways through the relay. Round trip = append sent →
  its echo received. Pass: RTT p99 < the direct RTT p99 (client → echo upstream, no relay,
  10 sessions, measured at the start of the run) + 50 ms, nothing lost.

The search for each ramp: up by ×1.4 until a step fails, then bisect until the gap is
under ~8 % (``--quick``: ~20 %); the ``--workers 2`` ramp starts at 1.8 × the
``--workers 1`` result (the issue's target), so its first step answers the question.

**CPU.** Server = utime+stime of every process in the server's tree (supervisor and
workers, via ``/proc/<pid>/task/*/children``), per process and summed; load generator = the
client processes and this one; echo = the echo upstream; machine = the root cgroup's CPU
counter (every task on the machine; ``/proc/stat`` where that is unreadable, see
:func:`machine_seconds`); others = machine − all of those, plus steal. All are measured
over the same window (after the warm-up) and shown in cores. Before each step the script
waits (``--quiet-wait``) for other processes to leave the CPUs idle, and a failed step
during which they used > 0.25 cores runs once more.

**The host limits.** The load generator runs on the same cores as the server. It is lean
(raw asyncio protocols, pre-encoded masked frames with a zero masking key, one event loop
per client process, one wake-up per pacing phase), but it still needs CPU, and on loopback
the kernel runs the receiver's TCP path in the sender's system call. When the machine was
≥ 85 % busy at the step that ended a ramp while the server used less than 0.9 core per
worker, the output says that the host, not the server, set the limit. ``--server-cpus`` / ``--client-cpus``
pin the server and the load generator (``taskset``) on a machine with spare cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import heapq
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import orjson
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from bench_load import (
    CHUNK_MS,
    CLK_TCK,
    PHASES,
    append_frames,
    chunk_of,
    cpu_seconds,
    deciding_position,
    free_port,
    session_update,
    speech_clip,
    vad_drop_warnings,
)
from bench_relay import CLIENT_KEY, KEY_ENV, UPSTREAM_KEY, ClientSession, Run
from bench_relay import open_session as open_relay_session
from rtgate.relay.wire import OP_TEXT, FrameScanner, payload_of

HERE = Path(__file__).resolve().parent
CHUNK_S = CHUNK_MS / 1000
LISTEN_P99_MS = 50.0
RELAY_EXTRA_P99_MS = 50.0
TARGET_RATIO = 1.8
GROW = 1.4
CONNECTS_AT_ONCE = 32
CONNECT_WITHIN_S = 90.0
QUIET_CORES = 0.25
"""A step runs when the machine's other processes use less than this; one they disturbed
(used more during it) that failed is run again."""
HOST_FULL = 0.85
"""Share of the machine's CPUs busy from which a failing step is put down to the host: with
more runnable threads than CPUs, an event loop that is not saturated still waits its turn."""


# ------------------------------------------------------------------ load generator (child process)


def client_frame(payload: bytes) -> bytes:
    """A final masked text frame with a zero masking key (valid; the payload needs no XOR)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Sender(Protocol):
    transport: asyncio.Transport

    def send(self, k: int) -> None: ...


class ListenSession(asyncio.Protocol):
    """One listen-only session: sends ``session.update`` after ``session.created``, then the
    pre-encoded appends :func:`drive` asks for; times speech events as bench_load does."""

    def __init__(self, frames: list[bytes], offset: int, update: bytes, window: list[float],
                 lags: list[float]) -> None:
        self.frames, self.offset, self.update = frames, offset, update
        self.window, self.lags = window, lags  # window: [start, end] of the measured sends
        self.sent: list[float] = []
        self.floor_ms = 0
        self.errors = 0
        self.closed = False
        self.head = b""
        self.scanner: FrameScanner | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before session.updated"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.scanner is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.head[: self.head.find(b"\r\n")]:
                self.ready.set_exception(ConnectionError(self.head[:end].decode(errors="replace")))
                return
            self.scanner = FrameScanner(masked=False, max_payload=1 << 24)
            data, self.head = self.head[end + 4 :], b""
        whole, frames = self.scanner.feed(data)
        for frame in frames:
            if frame[3] & 0x0F == OP_TEXT:
                self.on_event(payload_of(whole, frame), now)

    def on_event(self, payload: bytes, now: float) -> None:
        if not self.ready.done():
            if payload.startswith(b'{"type":"session.created"'):
                self.transport.write(self.update)
            elif payload.startswith(b'{"type":"session.updated"'):
                self.ready.set_result(None)
            elif payload.startswith(b'{"type":"error"'):
                self.ready.set_exception(RuntimeError(payload[:300].decode(errors="replace")))
            return
        if payload.startswith(b'{"type":"error"'):
            self.errors += 1
            return
        if not payload.startswith(b'{"type":"input_audio_buffer.speech_'):
            return
        position, self.floor_ms = deciding_position(orjson.loads(payload), self.floor_ms)
        if position is None:
            return
        k = chunk_of(position)
        if k < len(self.sent) and self.window[0] <= self.sent[k] <= self.window[1]:
            self.lags.append((now - self.sent[k]) * 1000)

    def send(self, k: int) -> None:
        self.sent.append(time.monotonic())
        self.transport.write(self.frames[(self.offset + k) % len(self.frames)])


async def open_listen(url: str, headers: dict[str, str], session: ListenSession) -> ListenSession:
    uri = parse_uri(url)
    request = ClientProtocol(uri).connect()
    request.headers.update(headers)
    await asyncio.get_running_loop().create_connection(lambda: session, uri.host, uri.port)
    lines = [f"GET {request.path} HTTP/1.1", *(f"{k}: {v}" for k, v in request.headers.raw_items())]
    session.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await asyncio.wait_for(session.ready, 60)
    return session


async def drive(sessions: list[Sender], t0: float, stop: float, warm: float, late: list[float]) -> None:
    """Chunk k of every session leaves at t0 + phase + (k+1)·20 ms; sessions are split into
    PHASES groups spread over the 20 ms, and one task wakes once per group."""
    groups = [sessions[g::PHASES] for g in range(PHASES)]
    schedule = [(t0 + g * CHUNK_S / PHASES + CHUNK_S, g, 0) for g in range(PHASES) if groups[g]]
    heapq.heapify(schedule)
    while schedule:
        due, g, k = heapq.heappop(schedule)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for session in groups[g]:
            if due >= warm:
                late.append((time.monotonic() - due) * 1000)
            session.send(k)
        if due + CHUNK_S <= stop:
            heapq.heappush(schedule, (due + CHUNK_S, g, k + 1))


async def client_main(spec: dict[str, Any]) -> None:
    """One load-generator process: connect, say ``ready``, read t0 from stdin, stream, report."""
    headers = {"Authorization": f"Bearer {spec['key']}"}
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    window = [float("inf"), float("inf")]
    values: list[float] = []
    run = Run(spec["n"])
    t_warm = [float("inf")]
    failed: list[str] = []
    connect_by = asyncio.get_running_loop().time() + CONNECT_WITHIN_S
    if spec["kind"] == "listen":
        clip, _ = speech_clip()
        frames = [client_frame(f.encode()) for f in append_frames(clip)]
        update = client_frame(session_update(False).encode())

    async def open_one(i: int) -> Sender:
        if spec["kind"] == "listen":
            offset = ((spec["first"] + i) * 37) % len(frames)
            return await open_listen(spec["url"], headers, ListenSession(frames, offset, update, window, values))
        return cast(Sender, await open_relay_session(spec["url"], headers, run, t_warm))

    async def one(i: int) -> Sender | None:
        async with gate:
            try:
                async with asyncio.timeout_at(connect_by):
                    return await open_one(i)
            except Exception as exc:
                failed.append(f"{type(exc).__name__}: {exc}"[:200])
                return None

    started = time.monotonic()
    opened = [s for s in await asyncio.gather(*(one(i) for i in range(spec["n"]))) if s is not None]
    print(f"ready {time.monotonic() - started:.2f}", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.strip():
        return
    t0 = float(line)
    stop, warm = t0 + spec["seconds"], t0 + spec["warmup"]
    window[:] = [warm, stop]
    t_warm[0] = warm
    late: list[float] = []
    await drive(opened, t0, stop, warm, late)
    if spec["kind"] == "relay":
        relay_sessions = cast(list[ClientSession], opened)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                while any(s.sent for s in relay_sessions):  # noqa: ASYNC110 (a bounded drain at the end)
                    await asyncio.sleep(0.01)
        values = [v * 1000 for v in run.rtts]
        lost = sum(len(s.sent) for s in relay_sessions)
        errors = closed = 0
    else:
        await asyncio.sleep(0.5)  # events for the window's last chunks
        listen_sessions = cast(list[ListenSession], opened)
        lost = 0
        errors = sum(s.errors for s in listen_sessions)
        closed = sum(s.closed for s in listen_sessions)
    for s in opened:
        s.transport.abort()
    np.savez(spec["out"], values=np.asarray(values, dtype=np.float32), late=np.asarray(late, dtype=np.float32))
    print(json.dumps({"failed": len(failed), "failures": failed[:3], "errors": errors, "closed": closed,
                      "lost": lost}), flush=True)


# ------------------------------------------------------------------ processes


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/<pid>/task/*/children``)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return pids


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            out[pid] = cpu_seconds(pid)
    return out


ROOT_CPU_COUNTERS = (Path("/sys/fs/cgroup/cpuacct/cpuacct.usage"), Path("/sys/fs/cgroup/cpu.stat"))


def machine_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all CPUs.

    Busy is the root cgroup's counter (cgroup v1 ``cpuacct.usage``, ns; v2 ``cpu.stat``
    ``usage_usec``), which adds up run time exactly, where readable. ``/proc/stat`` is the
    fallback: it samples each CPU at every tick, and a load that wakes every 2 ms, like
    this load generator's, can fall between ticks (measured here: 0.26 cores read as
    0.003). Steal (CPU the hypervisor gave to other guests) comes from ``/proc/stat``.
    """
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    busy = (user + nice + system + irq + softirq) / CLK_TCK
    v1, v2 = ROOT_CPU_COUNTERS
    with contextlib.suppress(OSError, ValueError):
        busy = int(v1.read_text()) / 1e9
    with contextlib.suppress(OSError, ValueError, StopIteration):
        busy = next(int(x.split()[1]) for x in v2.read_text().splitlines() if x.startswith("usage_usec")) / 1e6
    return busy, steal / CLK_TCK


def machine_cores(seconds: float) -> float:
    busy0, wall0 = machine_seconds()[0], time.monotonic()
    time.sleep(seconds)
    return (machine_seconds()[0] - busy0) / (time.monotonic() - wall0)


def http_get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    return bytes(opener.open(url, timeout=2).read())


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log: Path

    def cores_over(self, seconds: float) -> float:
        pids = tree_pids(self.proc.pid)
        before = cpu_by_pid(pids)
        time.sleep(seconds)
        after = cpu_by_pid(pids)
        return sum(after[p] - before[p] for p in after if p in before) / seconds

    def settle(self, within_s: float = 30.0) -> None:
        """Wait until every worker reports no session and the tree is quiet: start-up and
        the previous step's teardown must not count in the next window. ``/healthz``
        answers from one worker per connection, so several answers in a row must say 0."""
        deadline = time.monotonic() + within_s
        zeros = 0
        while time.monotonic() < deadline and zeros < 4 * self.workers:
            with contextlib.suppress(OSError, ValueError):
                zeros = zeros + 1 if json.loads(http_get(self.url("/healthz")))["sessions"] == 0 else 0
            time.sleep(0.05)
        while time.monotonic() < deadline and self.cores_over(0.5) > 0.1:
            pass

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def has_workers_flag() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "rtgate", "serve", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    return "--workers" in help_text


@contextlib.contextmanager
def rtgate_server(workdir: Path, config: Path, workers: int, pipeline: str, cpus: str | None,
                  workers_flag: bool) -> Iterator[Server]:
    port = free_port()
    log_path = workdir / f"server-w{workers}-{port}.log"
    env = {**os.environ, KEY_ENV: UPSTREAM_KEY, "RTGATE_API_KEYS": CLIENT_KEY, "OMP_NUM_THREADS": "1"}
    env.pop("RTGATE_WORKERS", None)
    pin = ["taskset", "-c", cpus] if cpus else []
    flag = ["--workers", str(workers)] if workers_flag else []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "rtgate", "serve", "--pipeline", pipeline, "--port", str(port),
             "--config", str(config), "--log-level", "warning", "--max-sessions", "5000", *flag],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, port, workers, log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rtgate serve exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                http_get(server.url("/healthz"))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("rtgate serve did not become ready in 120 s")
            time.sleep(0.2)
        server.settle(60.0)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def echo_upstream(cpus: str | None) -> Iterator[tuple[int, int]]:
    """bench_relay.py's echo upstream in its own process: (port, pid)."""
    port = free_port()
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.Popen([*pin, sys.executable, str(HERE / "bench_relay.py"), "--echo-upstream", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("echo upstream did not start")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        stop(proc)


# ------------------------------------------------------------------ one step


@dataclass
class Step:
    kind: str
    workers: int
    sessions: int
    bound_ms: float
    window_s: float = 0.0
    values_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    late_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: int = 0
    errors: int = 0
    lost: int = 0
    drops: int = 0
    server_cpu: dict[int, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    echo_cpu_s: float = 0.0
    machine_s: float = 0.0
    steal_s: float = 0.0
    connect_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def pct(self, q: float, values: np.ndarray | None = None) -> float:
        v = self.values_ms if values is None else values
        return float(np.percentile(v, q)) if len(v) else float("nan")

    @property
    def server_cores(self) -> float:
        return sum(self.server_cpu.values()) / self.window_s if self.window_s else float("nan")

    def cores(self, seconds: float) -> float:
        return seconds / self.window_s if self.window_s else float("nan")

    @property
    def cpu_ms_per_session_s(self) -> float:
        return 1000 * sum(self.server_cpu.values()) / (self.sessions * self.window_s)

    @property
    def others_s(self) -> float:
        """CPU the machine spent outside this benchmark's processes (other people's work), and
        CPU time the hypervisor took from it (steal)."""
        ours = sum(self.server_cpu.values()) + self.client_cpu_s + self.echo_cpu_s
        return max(0.0, self.machine_s - ours) + self.steal_s

    @property
    def disturbed(self) -> bool:
        return self.cores(self.others_s) > QUIET_CORES

    @property
    def passed(self) -> bool:
        return (len(self.values_ms) > 0 and self.pct(99) < self.bound_ms
                and not (self.failed or self.errors or self.lost or self.drops))


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    cpus: int
    echo: tuple[int, int] | None = None
    waited_s: float = 0.0
    discarded: list[Step] = field(default_factory=list)
    """Failed steps that other processes disturbed, each run again."""

    def measured_step(self, kind: str, server: Server, n: int, bound_ms: float) -> Step:
        """A step on a quiet machine; a failed one that others disturbed is run once more."""
        for again in (False, True):
            self.wait_quiet()
            step = self.step(kind, server, n, bound_ms)
            progress(step)
            server.settle()
            if step.passed or not step.disturbed or again:
                return step
            self.discarded.append(step)
            print(f"  (other processes used {step.cores(step.others_s):.2f} cores during it: again)",
                  file=sys.stderr, flush=True)
        raise AssertionError("unreachable")

    def step(self, kind: str, server: Server | None, n: int, bound_ms: float) -> Step:
        """N sessions of ``kind`` against ``server`` (None: straight to the echo upstream)."""
        args = self.args
        step = Step(kind, server.workers if server else 0, n, bound_ms)
        if server is None:
            assert self.echo is not None
            url, key = f"ws://127.0.0.1:{self.echo[0]}/v1/realtime?model=bench-echo", UPSTREAM_KEY
        else:
            model = "bench-echo" if kind == "relay" else "gpt-realtime"
            url, key = f"ws://127.0.0.1:{server.port}/v1/realtime?model={model}", CLIENT_KEY
        k = max(1, min(args.client_procs, n))
        pin = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
        clients, outs = [], []
        for j in range(k):
            share = n // k + (j < n % k)
            out = self.workdir / f"client-{j}.npz"
            spec = {"kind": kind, "url": url, "key": key, "n": share, "first": j * (n // k + 1),
                    "seconds": args.step_seconds, "warmup": args.warmup_seconds, "out": str(out)}
            clients.append(subprocess.Popen([*pin, sys.executable, __file__, "--client", json.dumps(spec)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            outs.append(out)
        try:
            for c in clients:
                line = cast(str, c.stdout and c.stdout.readline())
                if not line.startswith("ready"):
                    raise RuntimeError(f"load generator did not connect (exit {c.poll()})")
                step.connect_s = max(step.connect_s, float(line.split()[1]))
            drops0 = vad_drop_warnings(server.log) if server else 0
            t0 = time.monotonic() + 0.3
            for c in clients:
                assert c.stdin is not None
                c.stdin.write(f"{t0!r}\n")
                c.stdin.flush()
            time.sleep(max(0.0, t0 + args.warmup_seconds - time.monotonic()))
            before, wall0 = self.snapshot(server, clients), time.monotonic()
            time.sleep(max(0.0, t0 + args.step_seconds - time.monotonic()))
            after, wall1 = self.snapshot(server, clients), time.monotonic()
            reports = []
            for c in clients:
                stdout, _ = c.communicate(timeout=60)
                reports.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
        step.window_s = wall1 - wall0
        step.server_cpu = {p: after[0][p] - before[0][p] for p in after[0] if p in before[0]}
        step.client_cpu_s, step.echo_cpu_s, step.machine_s, step.steal_s = (
            a - b for a, b in zip(after[1:], before[1:], strict=True))
        data = [np.load(o) for o in outs]
        step.values_ms = np.concatenate([d["values"] for d in data])
        step.late_ms = np.concatenate([d["late"] for d in data])
        step.failed = sum(r["failed"] for r in reports)
        step.errors = sum(r["errors"] + r["closed"] for r in reports)
        step.lost = sum(r["lost"] for r in reports)
        step.notes = [f for r in reports for f in r["failures"]][:2]
        step.drops = vad_drop_warnings(server.log) - drops0 if server else 0
        return step

    def snapshot(self, server: Server | None,
                 clients: list[subprocess.Popen[str]]) -> tuple[dict[int, float], float, float, float, float]:
        """CPU seconds so far: server processes, load generator (clients and this process),
        echo upstream, machine busy, machine steal."""
        srv = cpu_by_pid(tree_pids(server.proc.pid)) if server else {}
        cli = sum(cpu_by_pid([c.pid for c in clients]).values()) + time.process_time()
        echo = cpu_seconds(self.echo[1]) if self.echo else 0.0
        return srv, cli, echo, *machine_seconds()

    def wait_quiet(self) -> None:
        """Wait (up to ``--quiet-wait`` seconds) until other processes use < QUIET_CORES; the
        time waited is added to the run's deadlines."""
        began = time.monotonic()
        while (busy := machine_cores(1.0)) > QUIET_CORES and time.monotonic() - began < self.args.quiet_wait:
            if time.monotonic() - began < 1.5:
                print(f"  (waiting for a quiet machine: {busy:.2f} cores busy outside this benchmark)",
                      file=sys.stderr, flush=True)
        self.waited_s += time.monotonic() - began


# ------------------------------------------------------------------ ramps


@dataclass
class Ramp:
    kind: str
    workers: int
    steps: list[Step] = field(default_factory=list)

    @property
    def best(self) -> Step | None:
        passing = [s for s in self.steps if s.passed]
        return max(passing, key=lambda s: s.sessions) if passing else None

    @property
    def first_fail(self) -> Step | None:
        best = self.best.sessions if self.best else 0
        failing = [s for s in self.steps if not s.passed and s.sessions > best]
        return min(failing, key=lambda s: s.sessions) if failing else None


def search(run: Callable[[int], Step], start: int, hint: int, resolution: float,
           deadline: Callable[[], float], step_cost_s: float) -> list[Step]:
    """Largest passing N: up by ×GROW until a failure, then bisect to ``resolution`` (a
    fraction of N). ``hint`` is a size believed to pass (the first ramp's result), used as
    the lower end of the first bisection when the first step fails."""
    steps: list[Step] = []
    lo, hi = 0, 0  # largest pass, smallest fail (0: none yet)
    n = start
    while not steps or time.monotonic() + step_cost_s < deadline():
        step = run(n)
        steps.append(step)
        if step.passed:
            lo = max(lo, n)
        else:
            hi = min(hi, n) if hi else n
        if not hi:
            nxt = n * GROW
        elif lo:
            if hi - lo <= max(10, resolution * lo):
                break
            nxt = (lo + hi) / 2
        elif hint and hint < hi and hi - hint > max(10, resolution * hint):
            nxt = (hint + hi) / 2
        else:
            nxt = hi / GROW
        nxt_n = max(10, round(nxt / 10) * 10)
        if nxt_n in {s.sessions for s in steps} or (not lo and hi == 10):
            break
        n = nxt_n
    return steps


def progress(s: Step) -> None:
    print(f"  {s.kind} w{s.workers} N={s.sessions}: p50 {s.pct(50):.1f} / p99 {s.pct(99):.1f} ms "
          f"({'pass' if s.passed else 'fail'}), server {s.server_cores:.2f} cores, load generator "
          f"{s.cores(s.client_cpu_s):.2f}, echo {s.cores(s.echo_cpu_s):.2f}, others {s.cores(s.others_s):.2f}, "
          f"connect {s.connect_s:.1f} s{'; ' + '; '.join(s.notes) if s.notes else ''}",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------ report


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_rev() -> str:
    out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return f"{out}{' + uncommitted changes' if dirty else ''}"


def limit(ramp: Ramp, cpus: int) -> tuple[str, bool]:
    """What ended ``ramp``, read at its first failing step, and whether the host (the machine
    ≥ HOST_FULL busy while the server used less than 0.9 core per worker) rather than the
    server did."""
    s = ramp.first_fail
    if s is None:
        return "none: no step failed before the time ran out", False
    busy, worker_cores = s.cores(s.machine_s), 0.9 * min(ramp.workers, cpus)
    parts = (f"machine {busy:.2f} of {cpus} cores busy: server {s.server_cores:.2f}, load generator "
             f"{s.cores(s.client_cpu_s):.2f}, echo {s.cores(s.echo_cpu_s):.2f}, others {s.cores(s.others_s):.2f}")
    if s.server_cores >= worker_cores:
        return f"server: its {ramp.workers} worker(s) saturated ({parts})", False
    if busy >= HOST_FULL * cpus:
        return f"**host** ({parts})", True
    return f"latency before saturation ({parts})", False


def details(ramps: list[Ramp], discarded: list[Step], cpus: int) -> list[str]:
    lines = [
        "| kind | workers | N | p50 ms | p99 ms | pass | server cores (per process) "
        "| server CPU ms per session-s | load generator cores | echo cores | others' cores "
        f"| machine busy (of {cpus}) | client late p99 ms | failed / errors / lost / VAD drops |",
        "|---|---:|---:|---:|---:|:---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = [(s, False) for r in ramps for s in r.steps] + [(s, True) for s in discarded]
    for s, again in sorted(rows, key=lambda x: (x[0].kind, x[0].workers, x[0].sessions, not x[1])):
        per = " + ".join(f"{v / s.window_s:.2f}" for _, v in sorted(s.server_cpu.items()) if v > 0)
        verdict = "disturbed, run again" if again else "yes" if s.passed else "no"
        lines.append(
            f"| {s.kind} | {s.workers} | {s.sessions} | {s.pct(50):.1f} | {s.pct(99):.1f} | {verdict} "
            f"| {s.server_cores:.2f} ({per}) | {s.cpu_ms_per_session_s:.2f} | {s.cores(s.client_cpu_s):.2f} "
            f"| {s.cores(s.echo_cpu_s):.2f} | {s.cores(s.others_s):.2f} | {s.cores(s.machine_s):.2f} "
            f"| {s.pct(99, s.late_ms):.1f} | {s.failed} / {s.errors} / {s.lost} / {s.drops} |")
    return lines


def report(bench: Bench, ramps: list[Ramp], direct: Step | None, command: str, started: str) -> str:
    a = bench.args
    lines = [
        f"### Workers: sessions per host, `--workers 2` against `--workers 1` ({started})",
        "",
        f"Machine: {bench.cpus} usable CPUs ({os.cpu_count()} online), {cpu_model()}; Python "
        f"{platform.python_version()}; build {git_rev()}; load average before the run {a.load_before}. "
        f"Command: `{command}` (`rtgate serve --pipeline {a.pipeline}`, {a.step_seconds:g} s per step, "
        f"first {a.warmup_seconds:g} s not measured; {a.client_procs} load-generator process(es)"
        f"{', on CPUs ' + a.client_cpus if a.client_cpus else ''}"
        f"{'; server on CPUs ' + a.server_cpus if a.server_cpus else ''}).",
        "",
        "| sessions | pass criterion | `--workers 1`: largest N passing (first failing); at it: p99, "
        "server cores, server CPU per session-second | `--workers 2` | ratio | what ended the `--workers 2` ramp |",
        "|---|---|---|---|---:|---|",
    ]
    for kind in dict.fromkeys(r.kind for r in ramps):
        pair = {r.workers: r for r in ramps if r.kind == kind}
        crit = (f"event lag p99 < {LISTEN_P99_MS:g} ms, no VAD drop, no error" if kind == "listen" else
                f"RTT p99 < {direct.pct(99) if direct else float('nan'):.1f} + {RELAY_EXTRA_P99_MS:g} ms, "
                "nothing lost")

        def cell(r: Ramp | None) -> str:
            if r is None:
                return "not run"
            b, f = r.best, r.first_fail
            if b is None:
                return f"none passed (from {f.sessions})" if f else "no step ran"
            return (f"**{b.sessions}** ({f.sessions if f else 'none failed'}); p99 {b.pct(99):.1f} ms, "
                    f"server {b.server_cores:.2f} cores, {b.cpu_ms_per_session_s:.2f} ms per session-s")

        r1, r2 = pair.get(1), pair.get(2)
        ratio = "n/a"
        if r1 and r2 and r1.best and r2.best:
            # A ramp that never failed (its time ran out) gives only a lower bound of its N.
            bound = {(True, True): "", (True, False): "≥ ", (False, True): "≤ "}.get(
                (r1.first_fail is not None, r2.first_fail is not None), "? ")
            ratio = f"**{bound}{r2.best.sessions / r1.best.sessions:.2f}×**"
        lines.append(f"| {kind} | {crit} | {cell(r1)} | {cell(r2)} | {ratio} "
                     f"| {limit(r2, bench.cpus)[0] if r2 else ''} |")
    lines += ["", f"Target (issue 12): ratio ≥ {TARGET_RATIO:g}×. Each ramp ran against a fresh server; "
              "steps wait for a quiet machine, and a failed step that other processes disturbed "
              f"(> {QUIET_CORES:g} cores) ran again."]
    if direct is not None:
        lines.append(f"Relay baseline: 10 sessions straight to the echo upstream, RTT p50 "
                     f"{direct.pct(50):.2f} / p99 {direct.pct(99):.2f} ms.")
    if a.no_workers_flag:
        lines.append("`rtgate serve` has no `--workers` option in this build: only one worker was measured.")
    notes = []
    for r in ramps:
        what, host = limit(r, bench.cpus)
        if host and r.first_fail:
            notes.append(f"* {r.kind}, `--workers {r.workers}`: **host-limited** — at N = {r.first_fail.sessions} "
                         f"the machine was full while the workers had cores to spare ({what.split('(', 1)[1]}: "
                         "this N is what the host holds with the load generator on it, not what the server alone "
                         "could.")
    if any(s.disturbed for r in ramps for s in r.steps):
        notes.append("* Some steps kept ran while other processes used > "
                     f"{QUIET_CORES:g} cores (see \"others' cores\"): read them with that in mind.")
    lines += [*(["", *notes] if notes else []), "", "Every step:", "", *details(ramps, bench.discarded, bench.cpus)]
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def bench(args: argparse.Namespace, command: str) -> str:
    cpus = len(os.sched_getaffinity(0))
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    flag = has_workers_flag()
    args.no_workers_flag = not flag
    workers = [w for w in args.workers if flag or w == 1]
    kinds = args.kinds
    ramp_budget = args.budget_seconds / (len(kinds) * len(workers))
    step_cost = args.step_seconds + 4
    ramps: list[Ramp] = []
    direct = None
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        bench_ = Bench(args, workdir, cpus)
        config = workdir / "relay.toml"
        if "relay" in kinds:
            bench_.echo = stack.enter_context(echo_upstream(args.client_cpus))
            config.write_text(
                f'[upstreams.echo]\nkind = "openai"\nbase_url = "http://127.0.0.1:{bench_.echo[0]}/v1"\n'
                f'api_key_env = "{KEY_ENV}"\n\n[[routes]]\nmodel = "bench-*"\nupstream = "echo"\n')
            direct = bench_.step("relay", None, 10, float("inf"))
            print(f"direct to echo, 10 sessions: RTT p99 {direct.pct(99):.2f} ms", file=sys.stderr)
        else:
            config.write_text("")
        for kind in kinds:
            bound = LISTEN_P99_MS if kind == "listen" else (direct.pct(99) if direct else 0) + RELAY_EXTRA_P99_MS
            hint = 0
            for w in workers:
                end = time.monotonic() + ramp_budget - bench_.waited_s
                print(f"{kind}, --workers {w}: starting the server", file=sys.stderr, flush=True)
                with rtgate_server(workdir, config, w, args.pipeline, args.server_cpus, flag) as server:

                    def run(n: int, server: Server = server, kind: str = kind, bound: float = bound) -> Step:
                        return bench_.measured_step(kind, server, n, bound)

                    def deadline(end: float = end) -> float:
                        return end + bench_.waited_s  # time spent waiting for a quiet machine is not spent

                    start = args.start[kind] if not hint else round(hint * TARGET_RATIO / 10) * 10

                    ramp = Ramp(kind, w, search(run, start, hint, args.resolution, deadline, step_cost))
                ramps.append(ramp)
                hint = ramp.best.sessions if ramp.best else 0
        return report(bench_, ramps, direct, command, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="6 s steps, a coarser search (≈ 20 %%), ≈ 3 min in all")
    parser.add_argument("--kinds", default="listen,relay", help="session kinds to ramp: listen, relay")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, in this order")
    parser.add_argument("--pipeline", default="builtin", choices=("builtin", "default"))
    parser.add_argument("--step-seconds", type=float, default=12.0, help="streaming time per step")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="start of each step not measured")
    parser.add_argument("--budget-seconds", type=float, default=760.0,
                        help="time for all ramps together (server start-ups and the baseline come on top)")
    parser.add_argument("--listen-start", type=int, default=200, help="first N of the listen ramp")
    parser.add_argument("--relay-start", type=int, default=400, help="first N of the relay ramp")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="longest wait, before each step, for other processes to leave the CPUs idle")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--server-cpus", metavar="LIST", help="pin the server (taskset -c LIST)")
    parser.add_argument("--client-cpus", metavar="LIST",
                        help="pin the load generator and the echo upstream (taskset -c LIST)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        asyncio.run(client_main(json.loads(args.client)))
        return 0
    args.kinds = [k for k in args.kinds.split(",") if k]
    if set(args.kinds) - {"listen", "relay"}:
        parser.error("--kinds: listen and/or relay")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.start = {"listen": args.listen_start, "relay": args.relay_start}
    args.resolution = 0.08
    if args.quick:
        args.step_seconds, args.warmup_seconds, args.budget_seconds, args.resolution = 6.0, 2.0, 130.0, 0.2
    command = " ".join(["python benchmarks/bench_workers.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"python {platform.python_version()}, {len(os.sched_getaffinity(0))} usable CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(bench(args, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
