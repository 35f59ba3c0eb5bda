"""Task specs, instructions and success detectors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.instructions import all_instructions, infer_task, make_instruction
from mmrobot.envs.tasks import TASKS, TaskSpec, is_success, list_tasks


@st.composite
def task_specs(draw):
    task = draw(st.sampled_from(sorted(TASKS)))
    valid = {
        "color": names.COLORS,
        "size": names.SIZES,
        "zone": names.ZONES,
        "base_color": names.COLORS,
        "base_size": names.SIZES,
    }
    params = {}
    for k in TASKS[task].params:
        if draw(st.booleans()):
            params[k] = draw(st.sampled_from(valid[k]))
    if task == "stack" and params.get("color") == params.get("base_color"):
        params.pop("base_color", None)
    return TaskSpec(task, params)


@given(task_specs())
@settings(max_examples=60, deadline=None)
def test_text_form_round_trips(spec):
    assert TaskSpec.parse(spec.format()) == spec


@given(task_specs(), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_resolve_fills_every_parameter_keeping_given_ones(spec, seed):
    full = spec.resolve(np.random.default_rng(seed))
    assert full.complete
    assert all(full.params[k] == v for k, v in spec.params.items())
    if full.task == "stack":
        assert full.block != full.base_block


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"valid tasks: \['reach', 'push', 'pick', 'place', 'stack'\]"
    ):
        TaskSpec.parse("throw color=red")
    with pytest.raises(ConfigError, match="unknown color 'purple'"):
        TaskSpec.parse("pick color=purple")
    with pytest.raises(ConfigError, match="unknown zone 'middle'"):
        TaskSpec.parse("push zone=middle")
    with pytest.raises(ConfigError, match="no parameter 'zone'"):
        TaskSpec.parse("pick zone=left")
    with pytest.raises(ConfigError, match="not key=value"):
        TaskSpec.parse("pick red")


def test_list_tasks_shows_every_task_with_its_values():
    lines = list_tasks()
    assert len(lines) == len(TASKS) >= 5
    assert any(
        line.startswith("push color=red|green|blue|yellow size=small|large zone=left|right")
        for line in lines
    )


@pytest.mark.parametrize(
    "text",
    [
        "stack color=red size=small base_color=blue base_size=large",
        "push color=green size=large zone=right",
        "pick color=yellow size=small",
    ],
)
def test_train_and_heldout_phrasings_are_disjoint_and_read_back(text):
    spec = TaskSpec.parse(text)
    train, held = all_instructions(spec, "train"), all_instructions(spec, "heldout")
    assert train and held and not train & held
    sized = all_instructions(spec, "train", sizes=True) | all_instructions(spec, "heldout", True)
    for s in sorted(sized)[:40]:
        assert infer_task(s) == spec, s
    rng = np.random.default_rng(0)
    assert {make_instruction(spec, rng, "train") for _ in range(30)} <= train
    assert {make_instruction(spec, rng, "heldout") for _ in range(30)} <= held


def test_colour_only_phrasing_drops_the_size_words_and_draws_the_same_numbers():
    spec = TaskSpec.parse("stack color=red size=small base_color=blue base_size=large")
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    sized, unsized = make_instruction(spec, a, sizes=True), make_instruction(spec, b, sizes=False)
    assert a.random() == b.random()  # the episode's later draws (its layout) are unchanged
    words = {"small", "little", "large", "big"}
    assert len(set(sized.split()) & words) == 2 and not set(unsized.split()) & words
    assert unsized == " ".join(w for w in sized.split() if w not in words)
    assert unsized in all_instructions(spec, sizes=False)
    assert not all_instructions(spec, sizes=False) & all_instructions(spec, sizes=True)
    red_on_red = TaskSpec.parse("stack color=red size=small base_color=red base_size=large")
    assert all_instructions(red_on_red, sizes=False) == set()
    with pytest.raises(ConfigError, match="both blocks are red.*needs its size words"):
        make_instruction(red_on_red, np.random.default_rng(0), sizes=False)


def test_instruction_naming_no_block_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"names no known block.*'crimson'"):
        infer_task("pick up the purple thing")
    with pytest.raises(ConfigError, match="unknown instruction split"):
        make_instruction(
            TaskSpec.parse("pick color=red size=small"), np.random.default_rng(0), "test"
        )


def test_success_detectors_follow_the_block_state(pick_env):
    env = pick_env
    sc = env.scene
    mj = sc.mujoco
    env.reset(seed=0, options={"task": "place color=red size=small"})
    spec = env.task
    assert not is_success(sc, spec)
    bin_xy = sc.ids.bin_pos[:2]
    sc.set_block_pose(("red", "small"), np.array([bin_xy[0], bin_xy[1], 0.03]), 0.0)
    mj.mj_forward(sc.model, sc.data)
    assert is_success(sc, spec)  # in the bin, gripper open
    sc.set_block_pose(("red", "small"), np.array([bin_xy[0] + 0.12, bin_xy[1], 0.02]), 0.0)
    mj.mj_forward(sc.model, sc.data)
    assert not is_success(sc, spec)  # just outside the wall

    push = TaskSpec.parse("push color=red size=small zone=left")
    zone = sc.ids.zone_pos["left"]
    sc.set_block_pose(("red", "small"), np.array([zone[0] + 0.03, zone[1], 0.02]), 0.0)
    mj.mj_forward(sc.model, sc.data)
    assert is_success(sc, push)
    assert not is_success(sc, TaskSpec.parse("push color=red size=small zone=right"))

    stack = TaskSpec.parse("stack color=red size=small base_color=blue base_size=large")
    sc.set_block_pose(("blue", "large"), np.array([0.45, -0.1, 0.028]), 0.0)
    sc.set_block_pose(("red", "small"), np.array([0.45, -0.1, 0.056 + 0.02]), 0.3)
    mj.mj_forward(sc.model, sc.data)
    assert is_success(sc, stack)
    sc.set_block_pose(("red", "small"), np.array([0.45 + 0.05, -0.1, 0.02]), 0.3)
    mj.mj_forward(sc.model, sc.data)
    assert not is_success(sc, stack)


def test_blocks_lists_the_named_blocks_with_open_parameters_as_none():
    assert TaskSpec.parse("pick color=red").blocks == [("red", None)]
    stack = TaskSpec.parse("stack color=red size=small base_color=blue")
    assert stack.blocks == [("red", "small"), ("blue", None)]
