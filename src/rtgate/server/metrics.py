"""In-process metrics with Prometheus text exposition (``GET /metrics``).

Counters, gauges and histograms keyed by label values; :meth:`Registry.render` writes the
Prometheus text format 0.0.4. Nothing here records content: labels are event *types*,
upstream names, directions, close codes and fault reasons. Label values that come from
clients (event types) are bounded by :func:`event_type_label` and by
:data:`MAX_SERIES_PER_METRIC`, so a client cannot grow the registry without limit.

``GET /metrics`` requires one of the configured API keys when keys are configured
(ephemeral keys are refused); with open access it is open, like every other route.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..pipeline.scheduler import Lane, Scheduler
from .admin import cluster_lines
from .auth import extract_credential

MAX_SERIES_PER_METRIC = 512
"""Distinct label sets one metric keeps; later ones are folded into ``other``."""

LATENCY_BUCKETS_S = (
    0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)
CONNECT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_TYPE_RE = re.compile(r"[a-z_]{1,40}(\.[a-z_0-9]{1,40}){0,6}")

Labels = tuple[str, ...]


_LABEL_CACHE: dict[str, str] = {}
_LABEL_CACHE_MAX = 1024


def event_type_label(kind: object) -> str:
    """An event ``type`` usable as a label: a dotted lower-case name, else ``other``."""
    if not isinstance(kind, str):
        return "other"
    label = _LABEL_CACHE.get(kind)
    if label is None:
        label = kind if len(kind) <= 96 and _TYPE_RE.fullmatch(kind) else "other"
        if len(_LABEL_CACHE) < _LABEL_CACHE_MAX:
            _LABEL_CACHE[kind] = label
    return label


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...]
    kind: str

    def _key(self, labels: Sequence[str], series: dict[Labels, object]) -> Labels:
        key = tuple(labels)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {key}")
        if key not in series and len(series) >= MAX_SERIES_PER_METRIC:
            return tuple("other" for _ in key)
        return key

    def _labels(self, key: Labels, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class Counter(_Metric):
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels, self.values)  # type: ignore[arg-type]
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(tuple(labels), 0.0)

    def render(self) -> list[str]:
        return [f"{self.name}{self._labels(k)} {_fmt(v)}" for k, v in sorted(self.values.items())]


@dataclass
class Gauge(Counter):
    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)


@dataclass
class Histogram(_Metric):
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    series: dict[Labels, list[float]] = field(default_factory=dict)
    """Per label set: one count per bucket, then ``+Inf`` count, then the sum."""

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels, self.series)  # type: ignore[arg-type]
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def count(self, *labels: str) -> int:
        row = self.series.get(tuple(labels))
        return int(sum(row[:-1])) if row else 0

    def render(self) -> list[str]:
        lines = []
        for key, row in sorted(self.series.items()):
            cumulative = 0.0
            for bound, n in zip(self.buckets, row, strict=False):
                cumulative += n
                le = self._labels(key, 'le="' + repr(bound) + '"')
                lines.append(f"{self.name}_bucket{le} {_fmt(cumulative)}")
            cumulative += row[len(self.buckets)]
            inf = self._labels(key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {_fmt(cumulative)}")
            lines.append(f"{self.name}_sum{self._labels(key)} {_fmt(row[-1])}")
            lines.append(f"{self.name}_count{self._labels(key)} {_fmt(cumulative)}")
        return lines


class Registry:
    """The metrics of one server process."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Callable[[], list[str]]] = []

    def collect(self, collector: Callable[[], list[str]]) -> None:
        """Add ``collector``: it returns exposition lines (with HELP and TYPE) at each render,
        for values that live elsewhere (the scheduler's lanes)."""
        self._collectors.append(collector)

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = self._add(Counter(name, help, tuple(labelnames), "counter"))
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = self._add(Gauge(name, help, tuple(labelnames), "gauge"))
        assert isinstance(metric, Gauge)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        metric = self._add(Histogram(name, help, tuple(labelnames), "histogram", tuple(sorted(buckets))))
        assert isinstance(metric, Histogram)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.render())  # type: ignore[attr-defined]
        for collector in self._collectors:
            lines.extend(collector())
        return "\n".join(lines) + "\n"


class RelayMetrics:
    """The relay's metrics, per upstream (see docs/relay.md)."""

    def __init__(self, registry: Registry) -> None:
        self.sessions = registry.counter(
            "rtgate_relay_sessions_total", "Relayed sessions opened, by upstream.", ["upstream"])
        self.active = registry.gauge(
            "rtgate_relay_sessions_active", "Relayed sessions open now, by upstream.", ["upstream"])
        self.faults = registry.counter(
            "rtgate_relay_faults_total",
            "Relayed sessions ended by a fault (upstream_unavailable, upstream_rejected, "
            "upstream_timeout, upstream_connection_lost, upstream_misconfigured, and "
            "client_not_reading: a send to the client blocked past send_deadline_s), by upstream.",
            ["upstream", "reason"])
        self.closes = registry.counter(
            "rtgate_relay_closes_total", "Close codes sent to relayed clients, by upstream.",
            ["upstream", "code"])
        self.events = registry.counter(
            "rtgate_relay_events_total",
            "Relayed frames by event type; direction is client_to_upstream or upstream_to_client.",
            ["upstream", "direction", "type"])
        self.bytes = registry.counter(
            "rtgate_relay_bytes_total", "Relayed frame bytes, by direction.", ["upstream", "direction"])
        self.connect_seconds = registry.histogram(
            "rtgate_relay_upstream_connect_seconds",
            "Time to open the upstream WebSocket (TCP, TLS, handshake).",
            ["upstream"], CONNECT_BUCKETS_S)
        self.added_latency = registry.histogram(
            "rtgate_relay_added_latency_seconds",
            "Time from receiving a frame on one side to handing it to the other side's socket.",
            ["upstream", "direction"])


class Metrics:
    """Every metric family of one server; ``app.state.rtgate.metrics``."""

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self.registry = Registry()
        self.relay = RelayMetrics(self.registry)
        self.sessions_refused = self.registry.counter(
            "rtgate_sessions_refused_total",
            "Local sessions refused by admission control (server/admission.py), by reason: "
            "capacity (max_conversations reached) or overloaded (models running late).",
            ["reason"])
        self.response_stages = self.registry.histogram(
            "rtgate_response_stage_seconds",
            "Local responses: seconds from the start of a response (a detected turn's commit) "
            "to its user audio transcribed (stage=transcript), the model's first text "
            "(first_text) and its first audio (first_audio), by profile.",
            ["profile", "stage"])
        if scheduler is not None:
            self.registry.collect(lambda: scheduler_lines(scheduler))


_LANE_FAMILIES = (
    ("granted", "counter", "rtgate_scheduler_granted_total", "Jobs granted a run, by lane."),
    ("waited", "counter", "rtgate_scheduler_waited_total", "Granted jobs that had to queue, by lane."),
    ("wait_s", "counter", "rtgate_scheduler_wait_seconds_total", "Time granted jobs spent queued."),
    ("busy_s", "counter", "rtgate_scheduler_busy_seconds_total", "Time granted jobs held their runs."),
    ("late_s", "counter", "rtgate_scheduler_late_seconds_total",
     "Time by which grants came after their due time."),
    ("speculated", "counter", "rtgate_scheduler_speculated_total", "Speculative jobs run."),
    ("speculation_refused", "counter", "rtgate_scheduler_speculation_refused_total",
     "Speculative jobs dropped: the lane had no spare capacity."),
    ("yield_requests", "counter", "rtgate_scheduler_yield_requests_total",
     "Running jobs asked to make way for a more urgent one."),
)


def _stat(attr: str) -> Callable[[Lane], float]:
    return lambda lane: float(getattr(lane.stats, attr))


def scheduler_lines(scheduler: Scheduler) -> list[str]:
    """Exposition lines of every lane's counters, its queue and its pressure."""
    lanes = scheduler.lanes()
    now = scheduler.now()
    families: list[tuple[str, str, str, Callable[[Lane], float]]] = [
        (name, kind, help_text, _stat(attr)) for attr, kind, name, help_text in _LANE_FAMILIES
    ]
    families.append(
        ("rtgate_scheduler_waiting", "gauge", "Jobs queued now, by lane.", lambda lane: lane.rules.waiting)
    )
    families.append((
        "rtgate_scheduler_pressure_seconds", "gauge",
        "How late due work runs on the lane (admission control).",
        lambda lane: lane.rules.pressure(now),
    ))
    lines: list[str] = []
    for name, kind, help_text, value in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{lane="{_escape(lane.name)}"}} {_fmt(value(lane))}' for lane in lanes]
    return lines


async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state.rtgate
    if not state.auth.open_access:
        credential = extract_credential(request.headers, request.query_params, [])
        grant = state.auth.check(credential)
        if grant is None or grant.ephemeral:
            return PlainTextResponse("metrics need one of the server's API keys\n", status_code=401)
    text = state.metrics.registry.render()
    extra = "\n".join(await cluster_lines(state))
    return PlainTextResponse(
        f"{text.rstrip(chr(10))}\n{extra}\n" if text.strip() else f"{extra}\n",
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
