"""Which llama.cpp instance and slot take a call (pipeline/engines/llama_slots.py): pure,
no model loaded."""

from __future__ import annotations

from rtgate.pipeline.engines.llama_slots import MOVE_TOKENS, STALE_S, Instance, SharedModel, estimate_tokens
from rtgate.pipeline.scheduler import Lane


def model(instances: int = 2, slots: int = 4) -> SharedModel:
    loaded = [Instance(server=None, executor=None) for _ in range(instances)]  # type: ignore[arg-type]
    return SharedModel(loaded, n_parallel=slots, lane=Lane("cores", 2), runs_per_instance=2)


def test_every_instance_has_its_slots() -> None:
    shared = model(instances=2, slots=3)
    for instance in shared.instances:
        assert [slot.index for slot in instance.slots] == [0, 1, 2]
        assert all(slot.instance is instance for slot in instance.slots)


def test_a_new_conversation_takes_an_idle_instance_and_makes_its_slot_home() -> None:
    shared = model()
    first, second = shared.instances
    first.slots[0].start()
    slot = shared.pick(key="item_a")
    assert slot.instance is second
    assert shared.homes["item_a"] is slot
    assert slot.owner == "item_a"


def test_a_conversation_keeps_its_slot_while_its_instance_has_room() -> None:
    """Its prompt is cached there: evaluating it again elsewhere costs more than sharing
    the instance with one other call."""
    shared = model()
    home = shared.pick(key="item_a")
    home.instance.slots[3].start()
    assert shared.pick(key="item_a") is home
    assert shared.pick(prefer=home, key="item_a") is home


def test_conversations_get_slots_of_their_own() -> None:
    """The case llama.cpp got wrong on its own: every prompt shares the system prompt,
    so a new conversation took the slot of an answer paused between segments."""
    shared = model(instances=1)
    first = shared.pick(key="item_a")
    second = shared.pick(key="item_b")
    assert first is not second
    assert shared.pick(key="item_a") is first
    assert shared.pick(key="item_b") is second


def test_a_new_conversation_takes_the_least_recently_used_slot() -> None:
    shared = model(instances=1, slots=2)
    oldest = shared.pick(key="item_a")
    newest = shared.pick(key="item_b")
    shared.pick(key="item_b")
    taken = shared.pick(key="item_c")
    assert taken is oldest
    assert "item_a" not in shared.homes
    assert shared.homes["item_b"] is newest


def test_a_slot_nobody_owns_goes_first() -> None:
    shared = model(instances=1, slots=3)
    shared.pick(key="item_a").tokens = 50
    shared.pick(key="item_b").tokens = 50
    unowned = shared.free(shared.instances[0])
    assert unowned.owner is None
    assert shared.pick(key="item_c") is unowned


def test_a_full_home_sends_the_call_to_a_free_slot_of_the_least_busy_instance() -> None:
    shared = model()
    first, second = shared.instances
    home = shared.pick(key="item_b")
    assert home.instance is first
    first.slots[1].start()
    first.slots[2].start()
    moved = shared.pick(prefer=home, key="item_b")
    assert moved.instance is second
    assert shared.homes["item_b"] is moved
    assert home.owner is None  # still holds item_b's prefix, for anyone


def test_a_long_conversation_stays_home_even_when_its_instance_is_full() -> None:
    """A call that went on holds hundreds of tokens in its slot: moving evaluated them
    all again (1-2.6 s), staying costs a batched decode."""
    shared = model()
    first, _second = shared.instances
    home = shared.pick(key="item_call", head="You are a friendly voice assistant.")
    home.tokens = estimate_tokens("You are a friendly voice assistant.") + MOVE_TOKENS + 1
    first.slots[1].start()
    first.slots[2].start()
    assert shared.pick(key="item_call", head="You are a friendly voice assistant.") is home
    assert shared.pick(prefer=home, key="item_call", head="You are a friendly voice assistant.") is home


def test_speculation_never_moves_a_long_conversation() -> None:
    """A prefill is worth less than its conversation's cache: with the home instance busy
    it is skipped, not run on the idle one (where it would evaluate the whole history
    and make that slot home)."""
    shared = model()
    head = "You are a friendly voice assistant."
    home = shared.pick(key="item_call", head=head)
    home.tokens = estimate_tokens(head) + MOVE_TOKENS + 1
    home.instance.slots[3].start()
    assert shared.idle("item_call", head) is None
    assert shared.homes["item_call"] is home
    home.tokens = estimate_tokens(head) + 10  # a new conversation's question: still moves
    moved = shared.idle("item_call", head)
    assert moved is not None and moved.instance is not home.instance


def test_a_busy_slot_is_not_given_to_another_conversation() -> None:
    shared = model(instances=1, slots=2)
    running = shared.pick(key="item_a")
    running.start()
    assert not shared.pick(key="item_b").busy


def test_a_conversation_waits_for_its_own_busy_slot() -> None:
    """Its prefill is still evaluating there: waiting ~0.1 s beats evaluating the whole
    prompt in another slot."""
    shared = model(instances=1, slots=2)
    running = shared.pick(key="item_a")
    running.start()
    assert shared.pick(key="item_a") is running
    running.start()
    running.finish()
    assert running.busy  # counted per call


def test_with_every_slot_busy_the_call_queues_on_the_least_recently_taken() -> None:
    shared = model(instances=1, slots=2)
    older, newer = shared.pick(key="item_a"), shared.pick(key="item_b")
    older.start()
    newer.start()
    assert shared.pick(key="item_c") is older


def test_speculative_work_takes_only_an_idle_instance_its_own_slot_first() -> None:
    shared = model()
    first, second = shared.instances
    home = shared.pick(key="item_a")
    assert shared.idle("item_a") is home
    home.start()
    other = shared.idle("item_a")
    assert other is not None and other.instance is not home.instance
    other.start()
    assert shared.idle("item_a") is None
    assert first.active == second.active == 1


def test_finish_frees_the_slot_and_the_instance() -> None:
    shared = model(instances=1)
    slot = shared.pick(key="item_a")
    slot.start()
    slot.finish()
    assert not slot.busy
    assert shared.active == 0


def test_new_conversations_use_every_free_slot_before_taking_one() -> None:
    shared = model(instances=2, slots=2)
    slots = [shared.pick(key=f"item_{n}") for n in range(4)]
    assert len({id(slot) for slot in slots}) == 4
    assert {id(slot.instance) for slot in slots[:2]} == {id(instance) for instance in shared.instances}


HEAD = "You are a helpful assistant on the phone. Keep answers short and friendly."


def test_a_new_conversation_prefers_a_slot_that_holds_its_system_prompt() -> None:
    """llama.cpp reuses the cached prefix: an empty slot would evaluate the whole system
    prompt again, a slot left by a conversation that ended does not."""
    now = [100.0]
    shared = model(instances=1, slots=4)
    shared.clock = lambda: now[0]
    ended = shared.pick(key="item_old", head=HEAD)
    ended.tokens = 120
    shared.pick(key="item_other", head="Speak French.")
    now[0] += STALE_S + 1
    live = shared.pick(key="item_other", head="Speak French.")
    live.tokens = 90
    assert shared.pick(key="item_new", head=HEAD) is ended
    assert shared.pick(key="item_newer", head="Speak French.") is not live  # an empty one
    assert set(shared.homes) == {"item_other", "item_new", "item_newer"}


def test_a_longer_live_conversation_keeps_its_slot() -> None:
    """Taking it would cost that conversation more tokens than an empty slot costs."""
    shared = model(instances=1, slots=2)
    live = shared.pick(key="item_a", head=HEAD)
    live.tokens = estimate_tokens(HEAD) + 200
    assert shared.pick(key="item_b", head=HEAD) is not live
    assert shared.homes["item_a"] is live


def test_in_a_burst_a_new_conversation_takes_a_slot_holding_only_a_question() -> None:
    """Another new conversation evaluates a dozen tokens again, not the system prompt."""
    shared = model(instances=1, slots=3)
    asked = shared.pick(key="item_a", head=HEAD)
    asked.tokens = estimate_tokens(HEAD) + 5
    assert shared.pick(key="item_b", head=HEAD) is asked
    assert "item_a" not in shared.homes


def test_an_answer_between_segments_keeps_its_slot() -> None:
    shared = model(instances=1, slots=2)
    answering = shared.pick(key="item_a", head=HEAD)
    answering.tokens = estimate_tokens(HEAD) + 5
    answering.answering = True
    assert shared.pick(key="item_b", head=HEAD) is not answering
    assert shared.pick(key="item_a", head=HEAD) is answering
    assert answering.answering  # its own next segment


def test_a_slot_taken_by_another_conversation_is_no_longer_answering() -> None:
    shared = model(instances=1, slots=1)
    slot = shared.pick(key="item_a", head=HEAD)
    slot.answering = True
    assert shared.pick(key="item_b", head=HEAD) is slot  # nothing else left
    assert not slot.answering


def test_a_cached_system_prompt_beats_an_idle_instance_while_its_instance_has_room() -> None:
    """Evaluating the system prompt in an empty slot costs more than decoding beside one
    other call."""
    shared = model(instances=2, slots=2)
    first, second = shared.instances
    ended, running = first.slots
    ended.head, ended.tokens = HEAD, 60
    running.start()
    assert shared.pick(key="item_new", head=HEAD) is ended
    assert shared.pick(key="item_other", head="Speak French.").instance is second
    running.owner = "item_running"
    second.slots[1].start()
    ended.start()  # the first instance is full now
    assert shared.pick(key="item_next", head=HEAD).instance is second


def test_an_ended_conversations_slot_goes_first_to_a_new_one() -> None:
    shared = model(instances=1, slots=3)
    ended = shared.pick(key="item_ended", head=HEAD)
    ended.tokens, ended.answering = 120, True
    shared.forget("item_ended")
    shared.forget("item_unknown")  # never had a slot: nothing to do
    assert "item_ended" not in shared.homes
    assert not ended.answering
    assert shared.pick(key="item_new", head=HEAD) is ended


def test_a_blank_slot_is_seeded_on_an_idle_instance_spreading_over_instances() -> None:
    shared = model(instances=2, slots=2)
    first, second = shared.instances
    used = shared.pick(key="item_a", head=HEAD)
    assert used.instance is first
    seeded = shared.blank(HEAD)
    assert seeded is not None and seeded.instance is second  # the first holds HEAD already
    assert seeded.head == HEAD and seeded.owner is None
    second.slots[1].start()
    assert shared.blank(HEAD) is first.slots[1]  # the second is busy now
    assert shared.blank(HEAD) is None  # the first's slots are used: nothing blank left


def test_a_seeded_slot_is_what_a_new_conversation_takes() -> None:
    shared = model(instances=1, slots=3)
    seeded = shared.blank(HEAD)
    assert shared.pick(key="item_new", head=HEAD) is seeded
