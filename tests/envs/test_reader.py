"""The instruction reader: every generated phrasing reads back to its spec, and a table of
instructions as a new user writes them (negation, spatial phrases, distractor colours,
politeness, word order) reads right or fails with a clear message."""

import itertools

import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs import instructions, names
from mmrobot.envs.reader import (
    COLOR_WORDS,
    SIZE_WORDS,
    AmbiguousInstruction,
    infer_task,
    read_instruction,
)
from mmrobot.envs.tasks import TASKS, TaskSpec

_VALUES = {
    "color": names.COLORS,
    "size": names.SIZES,
    "zone": names.ZONES,
    "base_color": names.COLORS,
    "base_size": names.SIZES,
}


def _complete_specs(task: str) -> list[TaskSpec]:
    params = TASKS[task].params
    specs = []
    for values in itertools.product(*(_VALUES[k] for k in params)):
        p = dict(zip(params, values, strict=True))
        if task == "stack" and (p["color"], p["size"]) == (p["base_color"], p["base_size"]):
            continue  # a block cannot be stacked on itself
        specs.append(TaskSpec(task, p))
    return specs


@pytest.mark.parametrize("split", instructions.SPLITS)
@pytest.mark.parametrize("task", list(TASKS))
def test_every_generated_phrasing_reads_back_to_its_spec(task, split):
    n = 0
    for spec in _complete_specs(task):
        for text in sorted(instructions.all_instructions(spec, split, sizes=True)):
            assert infer_task(text) == spec, text
            n += 1
        # by colour alone: the sizes are left open, to be resolved by the scene
        unsized = TaskSpec(task, {k: v for k, v in spec.params.items() if "size" not in k})
        for text in sorted(instructions.all_instructions(spec, split, sizes=False)):
            assert infer_task(text) == unsized, text
            n += 1
    assert n >= 40


def test_the_vocabulary_covers_the_scene_and_the_generated_words():
    assert tuple(COLOR_WORDS) == names.COLORS and tuple(SIZE_WORDS) == names.SIZES
    generated = ((instructions._COLOR_WORDS, COLOR_WORDS), (instructions._SIZE_WORDS, SIZE_WORDS))
    for table, ours in generated:
        for split in table.values():
            for key, words in split.items():
                assert set(words) <= set(ours[key]), (key, words)


def test_infer_task_is_importable_where_it_was():
    from mmrobot.envs import infer_task as from_envs
    from mmrobot.envs.instructions import infer_task as from_instructions

    assert from_envs is from_instructions is infer_task


# instruction -> the spec it is read as
READS = [
    # the examples
    ("move your gripper over to the red block", "reach color=red"),
    ("bring the hand next to the blue cube", "reach color=blue"),
    ("move to the red block on the left", "reach color=red"),
    ("lift the red block on the table", "pick color=red"),
    ("don't touch the red block, lift the blue one", "pick color=blue"),
    # synonyms of each action
    ("reach for the green cube", "reach color=green"),
    ("touch the yellow block", "reach color=yellow"),
    ("approach the large blue block", "reach color=blue size=large"),
    ("position the gripper above the red block", "reach color=red"),
    ("grasp the small green block", "pick color=green size=small"),
    ("hoist the golden brick", "pick color=yellow"),
    ("drag the red block to the right", "push color=red zone=right"),
    ("deposit the emerald cube in the basket", "place color=green"),
    ("carry the blue block into the bin", "place color=blue"),
    ("pile the red block on top of the green one", "stack color=red base_color=green"),
    # negation: the negated block is excluded, its verbs dropped
    ("do not lift the red block; lift the green one", "pick color=green"),
    ("lift the blue block, not the red one", "pick color=blue"),
    ("lift the blue block but not the red one", "pick color=blue"),
    ("pick up the blue block without touching the red one", "pick color=blue"),
    ("avoid the red block and pick up the blue one", "pick color=blue"),
    ("lift the blue block instead of the red one", "pick color=blue"),
    ("never touch the green block, push the yellow one to the left", "push color=yellow zone=left"),
    ("leave the red block alone and put the blue one in the bin", "place color=blue"),
    ("don't touch the small red block, lift the red one", "pick color=red size=large"),
    ("lift the red block, do not drop it", "pick color=red"),
    ("don't touch the red block, lift the red one", "pick color=red"),  # named again: this one
    ("don't lift the red block, push it to the left", "push color=red zone=left"),
    # spatial phrases: a zone names where a block goes, a position or the table names nothing
    ("push the red block to the left", "push color=red zone=left"),
    ("push the red block into the left zone", "push color=red zone=left"),
    ("shove it left, the red block", "push color=red zone=left"),
    ("push the red block on the left into the right zone", "push color=red zone=right"),
    ("put the red block on the left", "push color=red zone=left"),
    ("place the red block in the right zone", "push color=red zone=right"),
    ("nudge the red block towards the right side", "push color=red zone=right"),
    ("move the red block a little to the left", "push color=red zone=left"),
    ("lift the red block on the left", "pick color=red"),
    ("lift the red block in the left zone", "pick color=red"),
    ("lift the left red block", "pick color=red"),
    ("raise the big red block off the table", "pick color=red size=large"),
    ("push the red block to the left of the blue block", "push color=red"),
    ("hover over the red block on the right", "reach color=red"),
    # stacking: "on", "onto", "on top of"
    ("put the red block on the blue block", "stack color=red base_color=blue"),
    ("put the red block onto the blue one", "stack color=red base_color=blue"),
    ("place the red block on top of the blue block", "stack color=red base_color=blue"),
    ("lift the red block onto the blue block", "stack color=red base_color=blue"),
    ("stack the red block", "stack color=red"),
    (
        "set the small red cube onto the large red cube",
        "stack color=red size=small base_color=red base_size=large",
    ),
    (
        "put the small red cube onto the other red cube",
        "stack color=red size=small base_color=red base_size=large",
    ),
    ("lift the red block on the blue block", "pick color=red"),  # "on": where it is
    # distractor colours: landmarks do not change the block acted on
    ("lift the red block next to the blue one", "pick color=red"),
    ("go to the green block near the yellow one", "reach color=green"),
    ("put the red block beside the blue block in the bin", "place color=red"),
    ("hover over the red block, not the blue one", "reach color=red"),
    ("pick up the blue cube closest to the red cube", "pick color=blue"),
    # politeness
    ("could you please pick up the small red block?", "pick color=red size=small"),
    ("please put the red cube in the bin, thanks", "place color=red"),
    ("would you kindly nudge the navy box over to the left-hand area", "push color=blue zone=left"),
    (
        "I'd like you to put the red cube on top of the green cube please",
        "stack color=red base_color=green",
    ),
    ("Robot, can you go to the yellow block?", "reach color=yellow"),
    # word order
    ("the red block, pick it up", "pick color=red"),
    ("in the bin, put the red block", "place color=red"),
    ("onto the blue block, stack the red one", "stack color=red base_color=blue"),
    ("to the left zone, push the green block", "push color=green zone=left"),
    ("pick the red block up", "pick color=red"),
    # several verbs: the later step names the task
    ("go to the red block and pick it up", "pick color=red"),
    ("go to the red block and put it in the bin", "place color=red"),
    ("pick up the red block and put it on the blue block", "stack color=red base_color=blue"),
    ("grab the red block and push it", "push color=red"),
    # case, punctuation, hyphens, curly apostrophes
    ("LIFT THE RED BLOCK!", "pick color=red"),
    ("push the navy-blue cube to the right", "push color=blue zone=right"),
    ("don\u2019t touch the red block, lift the blue one", "pick color=blue"),
    ("pick up the red block right now", "pick color=red"),
]


@pytest.mark.parametrize(("text", "spec"), READS)
def test_instructions_read_as_a_user_means_them(text, spec):
    assert read_instruction(text).spec == TaskSpec.parse(spec), text


def test_notes_say_what_was_read_but_is_not_in_the_spec():
    notes = read_instruction("move to the red block on the left").notes
    assert notes == ("'on the left' says where the block is",)
    assert read_instruction("lift the red block on the table").notes == (
        "'on the table' names nothing",
    )
    r = read_instruction("don't touch the red block, lift the blue one")
    assert r.notes == ("excluded: the red block",)
    assert r.describe() == "pick color=blue  (excluded: the red block)"
    r = read_instruction("don't touch the small red block, lift the red one")
    assert "size=large: the small red block is excluded" in r.notes
    assert read_instruction("lift the red block next to the blue one").notes == (
        "'next to the blue one' is a landmark",
    )


# instruction -> every reading, listed in the error
AMBIGUOUS = [
    ("push the red block on the left", {"push color=red", "push color=red zone=left"}),
    ("lift the red or the blue block", {"pick color=red", "pick color=blue"}),
    ("lift the red block and the blue block", {"pick color=red", "pick color=blue"}),
    (
        "put the red block in the bin on the blue block",
        {"place color=red", "stack color=red base_color=blue"},
    ),
    ("move to the red block and then to the blue block", {"reach color=red", "reach color=blue"}),
]


@pytest.mark.parametrize(("text", "readings"), AMBIGUOUS)
def test_ambiguity_is_an_error_that_lists_the_readings(text, readings):
    with pytest.raises(AmbiguousInstruction) as info:
        read_instruction(text)
    e = info.value
    assert isinstance(e, ConfigError)
    assert {r.spec.format() for r in e.readings} == readings
    message = str(e)
    assert "is ambiguous" in message and "--task" in message
    assert all(f"  {r}" in message for r in readings)


# instruction -> what the error says
UNREADABLE = [
    ("", "is empty"),
    ("   ", "is empty"),
    ("sing", r"names no known block.*'crimson'"),
    ("dance a little", "names no known block"),
    ("pick up the purple thing", "names no known block"),
    ("lift the reddish block", "names no known block"),  # whole words only
    ("don't touch the red block", r"names no known block \(it only excludes the red block\)"),
    ("the red block", "names no action"),
    ("put the red block on the table", "but not where to"),
    ("move the red block", "but not where to"),
    ("move the red block to the blue block", "no task does that.*'onto the blue block'"),
    ("stack the red block in the bin", "stacking needs a block"),
    ("put the red block on the red block", "which is small and which is large"),
    ("lift the small block next to the red one", r"names no colour for the block to pick"),
    ("don't touch the red blocks, lift the small red one", "both names and excludes"),
    ("pick up the red blue block", r"names two colours \(blue, red\)"),
    ("lift to the red block", "names no block to act on"),
]


@pytest.mark.parametrize(("text", "match"), UNREADABLE)
def test_unreadable_instructions_say_why(text, match):
    with pytest.raises(ConfigError, match=match):
        read_instruction(text)
