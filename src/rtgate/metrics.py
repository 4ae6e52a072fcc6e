"""Counters, gauges and histograms keyed by label values, with Prometheus text exposition.

:meth:`Registry.render` writes the Prometheus text format 0.0.4. Label values that come
from clients (event types) are bounded by :func:`event_type_label` and by
:data:`MAX_SERIES_PER_METRIC`, so a client cannot grow a registry without limit. Each
layer defines its own metric families on a :class:`Registry` (the relay's in
:mod:`rtgate.relay.metrics`); the server owns the registry and serves it
(:mod:`rtgate.server.metrics`). Nothing here imports another rtgate module.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


def escape_label_value(value: str) -> str:
    """``value`` escaped for a label value in the text format (backslash, newline, quote)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """A sample value in the text format: an integer without ``.0``, else ``repr``."""
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
        parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(self.labelnames, key, strict=True)]
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
        return [f"{self.name}{self._labels(k)} {format_value(v)}" for k, v in sorted(self.values.items())]


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
                lines.append(f"{self.name}_bucket{le} {format_value(cumulative)}")
            cumulative += row[len(self.buckets)]
            inf = self._labels(key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {format_value(cumulative)}")
            lines.append(f"{self.name}_sum{self._labels(key)} {format_value(row[-1])}")
            lines.append(f"{self.name}_count{self._labels(key)} {format_value(cumulative)}")
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
