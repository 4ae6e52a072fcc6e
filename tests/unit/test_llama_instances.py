"""Which llama.cpp instance takes a call (pipeline/engines/llama.py, ``SharedModel.pick``):
pure, no model loaded."""

from __future__ import annotations

from rtgate.pipeline.engines.llama import Instance, SharedModel
from rtgate.pipeline.scheduler import Lane


def model(instances: int = 2) -> SharedModel:
    loaded = [Instance(server=None, executor=None) for _ in range(instances)]  # type: ignore[arg-type]
    return SharedModel(loaded, n_parallel=4, lane=Lane("cores", 2), runs_per_instance=2)


def test_a_conversation_goes_home_while_its_home_is_idle() -> None:
    shared = model()
    home = shared.pick(key="item_a")
    assert shared.pick(key="item_a") is home
    assert shared.pick(prefer=home, key="item_a") is home


def test_an_idle_instance_beats_a_busy_home() -> None:
    """Two calls batched on one single-thread instance run at half speed each while the
    other core waits: the second call goes to the idle instance, which becomes its home."""
    shared = model()
    first, second = shared.instances
    shared.homes["item_a"] = first
    first.active = 1
    assert shared.pick(prefer=first, key="item_a") is second
    assert shared.homes["item_a"] is second


def test_with_every_instance_busy_the_home_is_kept_while_it_has_room() -> None:
    shared = model()
    first, second = shared.instances
    first.active = second.active = 1
    assert shared.pick(prefer=second, key="item_b") is second
    second.active = 2
    assert shared.pick(prefer=second, key="item_b") is first  # the least busy
