"""``rtgate serve --workers N``: N worker processes on one port, and their supervisor.

The supervisor (the process ``rtgate serve`` started) binds the public port once per worker
(``SO_REUSEPORT``) and gives each worker its socket: the kernel spreads new connections
evenly over them by their addresses. (One socket shared by all workers would let the
worker that happened to sleep last take nearly every connection; sessions are long and
their model work runs in threads while the event loop waits, so "the idle worker
accepts" does not balance them.) The supervisor keeps the sockets, so a restarted worker
takes over its predecessor's socket and the connections queued on it. It also
binds one *internal* listener per worker (``internal_port + i``, or a free port) on the same
address; the workers use those to reach each other (a WebRTC call's sideband or hangup
that lands on a worker which does not hold the call is forwarded to the one that does,
server/forward.py), and with Redis other nodes use them too.

Each worker is a fresh interpreter (``spawn``): it loads its own models and sizes its
engines for its share of the cores (:func:`rtgate.pipeline.base.set_core_share`:
``usable cores // N``), so that N workers together use the cores one process would, and
admission control (server/admission.py) holds the latency target in each.
docs/benchmarks.md ("Workers") has the measurements behind this choice: memory per
worker, and conversations and listeners per host with one worker and with two.

Shared by all workers from the supervisor: the settings, the ephemeral-key secret (so a
key minted by one worker opens a session on another, even with no API keys configured),
and the list of the host's workers (id -> internal URL).

Signals: A worker ends (drains) when the supervisor dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
SIGTERM to the supervisor (``docker stop``, Kubernetes) is passed to every worker,
which drains (server/drain.py); the supervisor waits for them (``drain_timeout_s`` +
``shutdown_timeout_s`` + :data:`EXIT_GRACE_S`), then kills what is left. SIGINT (Ctrl-C)
reaches the whole process group from the terminal; the supervisor then only waits. A
worker that dies on its own (a crash, the OOM killer) is started again after
:data:`RESTART_DELAY_S`, unless it failed during start-up :data:`MAX_QUICK_FAILURES`
times in a row: then the supervisor stops everything and exits with status 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

from ..pipeline.base import usable_cores
from .ephemeral import SECRET_ENV
from .node import Node, advertise_host, http_url, new_node_id
from .settings import Settings

log = logging.getLogger("rtgate.workers")

RESTART_DELAY_S = 1.0
"""Pause before a worker that died is started again."""
QUICK_FAILURE_S = 60.0
"""A worker that dies within this many seconds of its start failed during start-up."""
MAX_QUICK_FAILURES = 3
"""Start-up failures in a row after which the supervisor gives up."""
EXIT_GRACE_S = 5.0
"""Seconds beyond the drain and shutdown timeouts a worker gets before it is killed."""


def worker_count(settings: Settings) -> int:
    """``settings.workers``, with 0 (``auto``) meaning one per usable core."""
    return settings.server.workers or usable_cores()


def bind(host: str, port: int, backlog: int = 2048, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    index: int
    node_id: str
    internal: socket.socket
    process: BaseProcess | None = None
    started_at: float = 0.0
    quick_failures: int = 0


PR_SET_PDEATHSIG = 1


def _end_with_supervisor() -> None:
    """Ask Linux to send this worker SIGTERM (a drain) when the supervisor dies, even by
    SIGKILL: no worker outlives it holding the port. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("worker: cannot ask to end with the supervisor (prctl)")


def worker_main(settings: Settings, index: int, count: int, node: Node,
                sockets: list[socket.socket], loop: str) -> None:
    """One worker: load the models, then serve ``sockets`` until a signal ends it."""
    from ..pipeline.base import set_core_share
    from .app import build_profiles, create_app
    from .auth import install_log_redaction
    from .heap import freeze_startup_heap
    from .serve import run_process

    _end_with_supervisor()
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [w{index} {node.id}] %(name)s: %(message)s",
    )
    install_log_redaction()
    set_core_share(count)
    log.info("worker %d (pid %d) starting, internal URL %s", index, os.getpid(), node.url)
    pipelines = build_profiles(settings)
    if index:  # one SIP listener per deployment process group: worker 0's (docs/sip.md)
        settings = settings.replace(sip_port=0)
    app = create_app(settings, profiles=lambda _settings: pipelines,
                     on_ready=freeze_startup_heap, node=node)
    run_process(settings, app, loop, sockets=sockets)


class Supervisor:
    """Starts the workers, passes signals on, restarts the ones that die; see the module."""

    def __init__(self, settings: Settings, count: int, loop: str) -> None:
        self.settings = settings
        self.count = count
        self.loop = loop
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        self._stop_signal: int | None = None

    def run(self) -> int:
        settings = self.settings
        public = [bind(settings.server.host, settings.server.port, reuse_port=True)]
        port = public[0].getsockname()[1]
        public += [bind(settings.server.host, port, reuse_port=True) for _ in range(self.count - 1)]
        address = advertise_host(settings.server.host, settings.cluster.advertise_host)
        workers = []
        for index in range(self.count):
            first = settings.cluster.internal_port
            internal = bind(settings.server.host, first + index if first else 0)
            workers.append(_Worker(index, new_node_id(), internal))
        peers = {w.node_id: http_url(address, w.internal.getsockname()[1]) for w in workers}
        if not settings.auth.api_keys and not os.environ.get(SECRET_ENV):
            # With no API keys, each process would pick its own random secret, and a key minted
            # by one worker would not open a session on another.
            os.environ[SECRET_ENV] = secrets.token_hex(32)
        log.info("rtgate: %d workers on http://%s:%d (internal: %s)", self.count, settings.server.host,
                 port, ", ".join(peers.values()))
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for worker in workers:
                self._start(worker, public, peers)
            return self._supervise(workers, public, peers)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in public:
                sock.close()
            for worker in workers:
                worker.internal.close()

    def _start(self, worker: _Worker, public: list[socket.socket], peers: dict[str, str]) -> None:
        node = Node(worker.node_id, url=peers[worker.node_id], peers=peers)
        process = self._context.Process(
            target=worker_main, name=f"rtgate-worker-{worker.index}",
            args=(self.settings, worker.index, self.count, node, [public[worker.index], worker.internal],
                  self.loop),
        )
        process.start()
        worker.process = process
        worker.started_at = time.monotonic()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_signal = sig

    def _supervise(self, workers: list[_Worker], public: list[socket.socket],
                   peers: dict[str, str]) -> int:
        status = 0
        while not self._stopping:
            sentinels = [w.process.sentinel for w in workers if w.process is not None]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for worker in workers:
                process = worker.process
                if process is None or process.is_alive() or self._stopping:
                    continue
                quick = time.monotonic() - worker.started_at < QUICK_FAILURE_S
                worker.quick_failures = worker.quick_failures + 1 if quick else 0
                log.error("worker %d (pid %s) exited with status %s%s", worker.index, process.pid,
                          process.exitcode, " during start-up" if quick else "")
                if worker.quick_failures >= MAX_QUICK_FAILURES:
                    log.error("worker %d failed %d times in a row during start-up: stopping",
                              worker.index, worker.quick_failures)
                    self._stopping, self._stop_signal, status = True, signal.SIGTERM, 1
                    break
                time.sleep(RESTART_DELAY_S)  # the supervisor's own loop: nothing else waits on it
                self._start(worker, public, peers)
        self._stop(workers)
        return status

    def _stop(self, workers: list[_Worker]) -> None:
        settings = self.settings
        if self._stop_signal == signal.SIGTERM:
            for worker in workers:  # SIGINT from a terminal has reached them already
                if worker.process is not None and worker.process.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.process.pid, signal.SIGTERM)
        shutdown = settings.shutdown
        deadline = time.monotonic() + shutdown.drain_timeout_s + shutdown.shutdown_timeout_s + EXIT_GRACE_S
        for worker in workers:
            if worker.process is not None:
                worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process is not None and worker.process.is_alive():
                log.error("worker %d did not stop in time: killed", worker.index)
                worker.process.kill()
                worker.process.join(5)
        log.info("rtgate: all workers stopped")


def run_workers(settings: Settings, count: int, loop: str) -> int:
    """Run ``count`` workers until a signal ends them; the exit status of ``rtgate serve``."""
    return Supervisor(settings, count, loop).run()
