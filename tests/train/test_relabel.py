"""Task relabelling before the grasp: which samples, which positions, which goal."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.envs.instructions import all_instructions
from mmrobot.envs.tasks import PICK_LIFT_M, TaskSpec
from mmrobot.train.relabel import TaskRelabel, bin_position
from mmrobot.train.step import IGNORE_TOKEN


def test_bin_position_is_the_scenes():
    from mmrobot.envs.scene import Scene

    np.testing.assert_allclose(bin_position(), Scene().ids.bin_pos, atol=1e-9)


def _grasp_data(tasks, pregrasp):
    from mmrobot.policies.tokenizers import ByteTokenizer

    b = len(tasks)
    ids, mask = ByteTokenizer(64).encode("pick up the small red block")
    tcp = np.tile([0.4, 0.0, 0.2], (b, 1))
    return dict(
        tasks=tasks,
        pregrasp=np.array(pregrasp),
        block_start=np.tile([0.5, 0.1, 0.02], (b, 1)),
        ids=np.tile(ids, (b, 1)),
        mask=np.tile(mask, (b, 1)),
        tokens=np.ones((b, 8, 7), np.int64),
        aux={"goal_rel": np.zeros((b, 3), np.float32), "phase": np.zeros(b, np.int64)},
        tcp=tcp,
    )


def test_only_grasping_tasks_before_the_grasp_are_relabelled():
    from mmrobot.policies.tokenizers import ByteTokenizer

    tasks = [
        "pick color=red size=small",  # before the grasp: relabelled
        "pick color=red size=small",  # already held: kept
        "place color=blue size=large",
        "stack color=green size=small base_color=red base_size=large",
        "reach color=red size=small",  # not a grasping task: kept
    ]
    d = _grasp_data(tasks, [3, 0, 8, 5, 8])
    new = TaskRelabel(1.0, 64).apply(**d, rng=np.random.default_rng(0), ignore=IGNORE_TOKEN)
    assert [n is not None for n in new] == [True, False, True, True, False]
    tok = ByteTokenizer(64)
    place_red = all_instructions(TaskSpec("place", {"color": "red", "size": "small"}))
    pick_blue = all_instructions(TaskSpec("pick", {"color": "blue", "size": "large"}))
    assert new[0] in place_red and tok.decode(d["ids"][0]) == new[0]
    assert new[2] in pick_blue
    stack_as = TaskSpec.parse(tasks[3]).params
    assert (
        any(
            new[3] in all_instructions(TaskSpec(t, {"color": "green", "size": "small"}))
            for t in ("pick", "place")
        )
        and "red" not in new[3]
        and stack_as["base_color"] == "red"
    )
    # positions from the first held step on are not trained; the rest are untouched
    assert (d["tokens"][0, :3] == 1).all() and (d["tokens"][0, 3:] == IGNORE_TOKEN).all()
    assert (d["tokens"][1] == 1).all() and (d["tokens"][4] == 1).all()
    # goal_rel for the new task: the bin for place, the lift point over the start for pick
    np.testing.assert_allclose(d["aux"]["goal_rel"][0], bin_position() - d["tcp"][0], atol=1e-6)
    lift = d["block_start"][2] + [0, 0, PICK_LIFT_M] - d["tcp"][2]
    np.testing.assert_allclose(d["aux"]["goal_rel"][2], lift, atol=1e-6)
    assert (d["aux"]["goal_rel"][1] == 0).all()


def test_relabel_share_and_errors():
    d = _grasp_data(["pick color=red size=small"] * 400, [8] * 400)
    new = TaskRelabel(0.25, 64).apply(**d, rng=np.random.default_rng(1), ignore=IGNORE_TOKEN)
    assert 70 <= sum(n is not None for n in new) <= 130
    d = _grasp_data(["pick color=red size=small"], [8])
    d["tcp"] = None
    with pytest.raises(Exception, match="goal_rel from the TCP"):
        TaskRelabel(1.0, 64).apply(**d, rng=np.random.default_rng(0), ignore=IGNORE_TOKEN)
    with pytest.raises(Exception, match="task_relabel"):
        TaskRelabel(1.5, 64)
