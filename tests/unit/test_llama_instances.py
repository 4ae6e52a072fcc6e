"""Which llama.cpp instance takes a call (pipeline/engines/llama.py, ``SharedModel.pick``):
pure, no model loaded."""

from __future__ import annotations

from rtgate.pipeline.engines.llama import Instance, SharedModel
from rtgate.pipeline.scheduler import Lane


def model(instances: int = 2) -> SharedModel:
    loaded = [Instance(server=None, executor=None) for _ in range(instances)]  # type: ignore[arg-type]
    return SharedModel(loaded, n_parallel=4, lane=Lane("cores", 2), runs_per_instance=2)


def test_a_new_conversation_takes_an_idle_instance_and_makes_it_home() -> None:
    shared = model()
    first, second = shared.instances
    first.active = 1
    assert shared.pick(key="item_a") is second
    assert shared.homes["item_a"] is second


def test_a_conversation_stays_home_while_its_home_has_room() -> None:
    """Its prompt is cached there: evaluating it again elsewhere costs more than sharing
    the instance with one other call."""
    shared = model()
    first = shared.instances[0]
    shared.homes["item_a"] = first
    first.active = 1
    assert shared.pick(key="item_a") is first
    assert shared.pick(prefer=first, key="item_a") is first


def test_a_full_home_sends_the_call_to_the_least_busy() -> None:
    shared = model()
    first, second = shared.instances
    first.active, second.active = 2, 1
    assert shared.pick(prefer=first, key="item_b") is second
    assert shared.homes["item_b"] is second
