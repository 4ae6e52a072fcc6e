"""The server's metrics and their Prometheus text exposition (``GET /metrics``).

:class:`Metrics` holds one process's :class:`~rtgate.metrics.Registry` (counters, gauges
and histograms: :mod:`rtgate.metrics`) with every family: the relay's
(:class:`~rtgate.relay.metrics.RelayMetrics`), admission's, the response stages' and the
scheduler's lanes. Nothing here records content: labels are event *types*, upstream names,
directions, close codes and fault reasons.

``GET /metrics`` requires one of the configured API keys when keys are configured
(ephemeral keys are refused); with open access it is open, like every other route.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..metrics import Registry, escape_label_value, format_value
from ..pipeline.engines.llama_slots import PROMPT_TOKENS, PromptTokens
from ..pipeline.scheduler import Lane, Scheduler
from ..relay.metrics import RelayMetrics
from .admin import cluster_lines
from .auth import extract_credential


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
        self.registry.collect(lambda: prompt_token_lines(PROMPT_TOKENS))


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
        lines += [
            f'{name}{{lane="{escape_label_value(lane.name)}"}} {format_value(value(lane))}' for lane in lanes
        ]
    for attr, name, help_text in _WORK_FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for lane in lanes:
            for work, stats in sorted(lane.stats.work.items()):
                kind = escape_label_value(work or "other")
                labels = f'lane="{escape_label_value(lane.name)}",work="{kind}"'
                lines.append(f"{name}{{{labels}}} {format_value(float(getattr(stats, attr)))}")
    return lines


_WORK_FAMILIES = (
    ("runs", "rtgate_scheduler_work_runs_total", "Jobs granted a run, by lane and kind of job."),
    ("busy_s", "rtgate_scheduler_work_busy_seconds_total",
     "Time jobs held their runs, by lane and kind of job."),
    ("wait_s", "rtgate_scheduler_work_wait_seconds_total",
     "Time jobs spent queued, by lane and kind of job."),
    ("late_s", "rtgate_scheduler_work_late_seconds_total",
     "Time by which grants came after their due time, by lane and kind of job."),
)


def prompt_token_lines(tokens: PromptTokens) -> list[str]:
    """Exposition lines of the local llama.cpp models' prompt tokens, by whether a slot's
    cache held them."""
    name = "rtgate_llm_prompt_tokens_total"
    return [
        f"# HELP {name} Prompt tokens of the local llama.cpp model's calls: cached=\"true\" "
        "were in the slot's prompt cache, cached=\"false\" were evaluated.",
        f"# TYPE {name} counter",
        f'{name}{{cached="true"}} {tokens.reused}',
        f'{name}{{cached="false"}} {tokens.evaluated}',
    ]


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
