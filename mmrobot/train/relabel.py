"""Task relabelling before the grasp (``task_relabel`` in the train config).

Pick, place and stack begin with the same motion: the scripted expert grasps the named block
the same way whatever it will do with it (:func:`mmrobot.envs.experts.expert_plan`), so
until the block is first held a pick demonstration is also a place demonstration of the same
block, and a stack demonstration is both. v6, shown the same pre-grasp observations of 20
fresh episodes, missed the expert's x-y step by 2.7 mm with the pick instruction and by
5.2 mm with the place instruction naming the same block (and 3.2 against 5.8 mm on place's
episodes): the grasp was learnt once per task, from a third of the data each.

Relabelling gives such a sample the instruction of another task (pick or place) naming the
same block, trains only the chunk positions before the first held step (the rest are
:data:`~mmrobot.train.step.IGNORE_TOKEN`), and recomputes the ``goal_rel`` target for the new
task (:func:`~mmrobot.envs.tasks.goal_position`: the lift point over the block's start, or
the bin). Pick and place only: a stack instruction needs a base block that a pick or place
scene may not have.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.instructions import make_instruction
from mmrobot.envs.tasks import PICK_LIFT_M, TaskSpec

if TYPE_CHECKING:
    from mmrobot.train.data import ChunkSamples

__all__ = ["RELABELLED_TASKS", "SampleLevers", "TaskRelabel", "bin_position"]

#: tasks whose pre-grasp samples are relabelled, and the tasks they may become
RELABELLED_TASKS: dict[str, tuple[str, ...]] = {
    "pick": ("place",),
    "place": ("pick",),
    "stack": ("pick", "place"),
}
_SCENE_XML = Path(__file__).resolve().parents[2] / "envs" / "tabletop.xml"


@functools.lru_cache(maxsize=2)
def bin_position(xml: str | Path = _SCENE_XML) -> np.ndarray:
    """The bin's position (3,) in the base frame, from the scene (the place goal)."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(xml))
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, names.BIN_BODY)
    if body < 0:
        raise ConfigError(f"{xml}: no body {names.BIN_BODY!r}")
    return data.xpos[body].copy()


class TaskRelabel:
    """Relabels a share ``prob`` of a batch's pre-grasp pick, place and stack samples."""

    def __init__(self, prob: float, max_len: int, bin_xyz: np.ndarray | None = None) -> None:
        from mmrobot.policies.tokenizers import ByteTokenizer

        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"task_relabel must be in [0, 1], got {prob}")
        self.prob = prob
        self.tokenizer = ByteTokenizer(max_len)
        self.bin_xyz = bin_position() if bin_xyz is None else np.asarray(bin_xyz, np.float64)

    def apply(
        self,
        tasks: Sequence[str],
        pregrasp: np.ndarray,
        block_start: np.ndarray,
        ids: np.ndarray,
        mask: np.ndarray,
        tokens: np.ndarray,
        aux: dict[str, np.ndarray],
        tcp: np.ndarray | None,
        rng: np.random.Generator,
        ignore: int,
    ) -> list[str | None]:
        """Relabel in place.

        Args:
            tasks: (B,) each sample's task spec text.
            pregrasp: (B,) chunk positions of each sample before its episode's first held
                step (0: already held, or not a grasping task).
            block_start: (B, 3) the named block's position at its episode's start.
            ids, mask: (B, L) the instruction tokens, replaced on relabelled rows.
            tokens: (B, H, D) target tokens; positions from ``pregrasp`` on become ``ignore``.
            aux: privileged targets; ``goal_rel`` is recomputed where present.
            tcp: (B, 3) the TCP position of each sample (needed for ``goal_rel``).
            rng: the draw.
            ignore: the ignored token value.

        Returns:
            per sample, its new instruction text, or None where it was not relabelled.
        """
        out: list[str | None] = [None] * len(tasks)
        draws = rng.random(len(tasks))
        for r, text in enumerate(tasks):
            spec = TaskSpec.parse(text)
            targets = RELABELLED_TASKS.get(spec.task)
            if not targets or pregrasp[r] <= 0 or draws[r] >= self.prob:
                continue
            new = targets[int(rng.integers(len(targets)))]
            block = {"color": spec.params["color"], "size": spec.params["size"]}
            instruction = make_instruction(TaskSpec(new, block), rng, "train")
            ids[r], mask[r] = self.tokenizer.encode(instruction)
            tokens[r, int(pregrasp[r]) :] = ignore
            if "goal_rel" in aux:
                if tcp is None:
                    raise ConfigError(
                        "task_relabel recomputes goal_rel from the TCP position, which this "
                        "dataset does not have; collect it again (mmrobot collect)"
                    )
                if new == "pick":
                    goal = block_start[r] + np.array([0.0, 0.0, PICK_LIFT_M])
                else:
                    goal = self.bin_xyz
                aux["goal_rel"][r] = goal - tcp[r]
            out[r] = instruction
        return out


class SampleLevers:
    """The training levers that rewrite a batch's samples, in their order: task relabelling
    (``task_relabel``), then the colour swap (``color_swap``, which reads the relabelled
    instructions)."""

    def __init__(self, task_relabel: float, color_swap: float, max_len: int) -> None:
        from mmrobot.train.color_swap import ColorSwap

        self.relabel = TaskRelabel(task_relabel, max_len) if task_relabel else None
        self.color = ColorSwap(color_swap, max_len) if color_swap else None

    def apply(
        self,
        samples: ChunkSamples,
        idx: np.ndarray,
        batch: dict[str, np.ndarray],
        tokens: np.ndarray,
        aux: dict[str, np.ndarray],
        image_keys: Sequence[str],
        relabel_rng: np.random.Generator,
        color_rng: np.random.Generator,
    ) -> None:
        """Rewrite the batch of samples ``idx`` in place: its inputs ``batch``, (B, H, D)
        target ``tokens`` and privileged targets ``aux``."""
        from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS
        from mmrobot.train.step import IGNORE_TOKEN

        episodes = samples.episode_of[idx]
        texts = [samples.instructions[e] for e in episodes]
        if self.relabel is not None:
            new = self.relabel.apply(
                [samples.tasks[e] for e in episodes],
                samples.pregrasp[idx],
                samples.block_start[idx],
                batch[INSTRUCTION_TOKENS],
                batch[INSTRUCTION_MASK],
                tokens,
                aux,
                samples.tcp[idx],
                relabel_rng,
                IGNORE_TOKEN,
            )
            texts = [t if n is None else n for t, n in zip(texts, new)]
        if self.color is not None:
            self.color.apply(
                batch, image_keys, texts, INSTRUCTION_TOKENS, INSTRUCTION_MASK, color_rng
            )
