"""Where a trained policy goes wrong in closed loop: the expert's phase at each visited state.

Runs a torch checkpoint closed-loop (through the safety layer, as ``mmrobot eval`` does) and,
at every tick, asks the scripted expert what it would do in that state
(:func:`mmrobot.envs.experts.expert_plan`, a pure function of the state). Per task and per
expert phase it reports:

- how many ticks the policy spent in states the expert labels with that phase (a policy that
  descends before it is over the block spends its time in ``rise``: "up first, you are beside
  the block"), and in how many episodes it got there at all (a pick-and-place episode that
  never visits ``lift`` never held its block);
- how far the policy's ``block_rel`` head (through fusion) and its camera head (cameras and
  instruction only) place the named block in x-y, against the simulator's truth;
- how far the executed x-y step is from the expert's, and both z steps;
- whether the policy believes it holds the block (its ``held`` head, a probability) against
  the simulator's truth, and its gripper command against the expert's (1 open, 0 closed): a
  policy that closed beside the block and carries nothing shows a high belief where the
  truth is 0.

It also reports the two heads' block error at the first tick of fresh episodes (every task
starts from the same arm pose, so a task whose error is larger there has a perception
problem, not a closed-loop one), and, for the grasping tasks, each episode's first closing
of the gripper (the first tick whose executed command goes from open to closed): when, where
the TCP is against the expert's grasp point (x-y distance, height above it), how far the tool
is turned from the block's faces, how far the fused ``block_rel`` head places the block
then, whether the block is held 5 ticks later and whether the episode succeeds (for v11, no
episode whose first closing missed succeeded: docs/policy-trials.md). For the episodes whose first
closing held and that still failed, it reports where the block was lost: the expert's phase
at the last tick it was held, whether the policy had opened the gripper (a release) or not (a
slip), where the block then was against the task's goal (x-y distance; its bottom's height
above the goal point: for stack the base block's top) and how far the fused ``goal_rel``
head placed that goal, or that it was never lost (held to the time limit, or released
where it does not count).

Usage: python benchmarks/closed_loop_probe.py --checkpoint policies/release
           [--tasks reach pick place stack] [--episodes 3] [--starts 24] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _Tick(NamedTuple):
    """One tick of a grasping episode (lengths in metres)."""

    grip: float  # the executed gripper command (1 open, 0 closed)
    xy: float  # the TCP's x-y distance from the expert's grasp point
    dz: float  # its height above the grasp point
    yaw: float  # the tool's yaw from the named block's faces (rad, folded to +-pi/4)
    held: bool  # the block is held
    along: float  # the x-y offset along the fingers' closing axis
    clearance: float  # how far along that axis the open pads clear the block
    head: float  # the fused block head's x-y error
    phase: str  # the expert's phase of this state
    goal_xy: float  # the block's x-y distance from the task's goal point
    goal_dz: float  # the block bottom's height above the goal (stack: the base's top)
    goal_head: float  # the fused goal head's x-y error
    nearest: str  # the block nearest the TCP (x-y): "named", "base" (stack's) or "other"


def _heads(model, ps, obs, instruction: str) -> tuple[float, float, float, float]:
    """x-y error (m) of the fused and the camera block heads against the privileged state
    ``ps`` of the observed state, the ``held`` head's probability and the fused goal head's
    x-y error (m)."""
    import torch

    from mmrobot.policies.collate import collate
    from mmrobot.policies.model import batch_to_torch

    batch = collate([obs], [instruction], model.config.streams, model.tokenizer)
    with torch.inference_mode():
        _, aux = model(batch_to_torch(batch), with_aux=True)
    nan = float("nan")
    fused = camera = goal = nan
    if "goal_rel" in aux:  # heads predict centimetres
        goal = float(np.linalg.norm(aux["goal_rel"][0, :2].numpy() / 100 - ps.goal_rel[:2]))
    if "block_rel" in aux:
        fused = float(np.linalg.norm(aux["block_rel"][0, :2].numpy() / 100 - ps.block_rel[:2]))
    if "camera/block_rel" in aux:  # in the base frame
        cam = aux["camera/block_rel"][0, :2].numpy() / 100 - ps.tcp[:2]
        camera = float(np.linalg.norm(cam - ps.block_rel[:2]))
    belief = float(torch.sigmoid(aux["held"][0].reshape(-1)[0])) if "held" in aux else nan
    return fused, camera, belief, goal


def _grasp_tick(env, ps, grip: float, phase: str, head: float, goal_head: float) -> _Tick:
    """The :class:`_Tick` of the env's current state (``ps`` its privileged state)."""
    from mmrobot.envs.experts import finger_axis, finger_clearance, grasp_point, tool_yaw_to_block

    sc = env.scene
    block = env.task.block
    tcp = sc.tcp_pose()[0]
    d = tcp - grasp_point(sc, block)
    to_goal = ps.block_rel - ps.goal_rel
    near = min(sc.ids.block_body, key=lambda b: np.linalg.norm(sc.block_pos(*b)[:2] - tcp[:2]))
    base = env.task.base_block if env.task.task == "stack" else None
    return _Tick(
        grip=grip,
        xy=float(np.linalg.norm(d[:2])),
        dz=float(d[2]),
        yaw=tool_yaw_to_block(sc, block),
        held=bool(ps.held),
        along=float(abs(d @ finger_axis(sc))),
        clearance=finger_clearance(sc, block),
        head=head,
        phase=phase,
        goal_xy=float(np.linalg.norm(to_goal[:2])),
        goal_dz=float(to_goal[2]) - sc.block_half_m(*block),
        goal_head=goal_head,
        nearest="named" if near == block else "base" if near == base else "other",
    )


def _first_closing(ticks: list[_Tick]) -> dict[str, float] | None:
    """The first open -> closed tick of an episode, with whether the block is held within
    the 5 ticks after it; None if it never closes."""
    for i in range(1, len(ticks)):
        if ticks[i - 1].grip >= 0.5 > ticks[i].grip:
            t = ticks[i]
            return {
                "tick": i,
                "xy_cm": 100 * t.xy,
                "dz_cm": 100 * t.dz,
                "yaw_deg": np.degrees(abs(t.yaw)),
                "head_xy_cm": 100 * t.head,
                "along_fingers_cm": 100 * t.along,
                "clearance_cm": 100 * t.clearance,
                "held": any(u.held for u in ticks[i + 1 : i + 6]),
                "nearest": t.nearest,
            }
    return None


def _first_loss(ticks: list[_Tick], closing: int) -> dict:
    """After a first closing at tick ``closing`` that held (within 5 ticks): the first tick
    the block is no longer held, and at the last held tick the expert's phase, whether the
    policy's gripper command was open (a release) or closed (a slip) and the block against
    the goal; ``phase`` "never" if it stays held to the end."""
    first_held = next(i for i in range(closing, len(ticks)) if ticks[i].held)
    for i in range(first_held + 1, len(ticks)):
        if not ticks[i].held:
            last = ticks[i - 1]
            opened = last.grip >= 0.5 or ticks[i].grip >= 0.5
            return {
                "phase": last.phase,
                "how": "released" if opened else "slipped",
                "tick": i,
                "goal_xy_cm": 100 * last.goal_xy,
                "goal_dz_cm": 100 * last.goal_dz,
                "goal_head_xy_cm": 100 * last.goal_head,
            }
    return {"phase": "never", "how": "-", "tick": len(ticks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "policies" / "release"))
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "pick", "place", "stack"])
    parser.add_argument("--episodes", type=int, default=3, help="closed-loop episodes per task")
    parser.add_argument("--starts", type=int, default=24, help="fresh episodes per task")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    import mmrobot.envs  # noqa: F401 - picks a headless GL backend before mujoco is imported
    from mmrobot.envs.experts import expert_plan, plan_action
    from mmrobot.envs.perturb import GRASP_TASKS
    from mmrobot.envs.privileged import privileged_state
    from mmrobot.train.eval import (
        env_config_for_policy,
        load_policy,
        make_eval_env,
        policy_stream_specs,
        run_episode,
        split_env_config,
    )

    torch.set_num_threads(2)
    policy = load_policy(args.checkpoint)
    model = getattr(policy, "model", None)
    if model is None:
        raise SystemExit("closed_loop_probe needs a torch checkpoint (its auxiliary heads)")
    env = make_eval_env(
        split_env_config(env_config_for_policy(policy_stream_specs(policy)), "train")
    )
    base = env.unwrapped

    start_rows, starts = [], {}
    for task in args.tasks:
        errs = []
        for seed in range(args.starts):
            _, info = env.reset(seed=seed, options={"task": task})
            ps = privileged_state(base)
            errs.append(_heads(model, ps, base.observation, str(info["instruction"]))[:2])
        fused, camera = np.nanmedian(np.array(errs), axis=0) * 100
        starts[task] = {"fused_xy_cm": float(fused), "camera_xy_cm": float(camera)}
        start_rows.append([task, args.starts, f"{fused:.2f}", f"{camera:.2f}"])
    print_table(
        f"block x-y error at the first tick (median, cm): {args.checkpoint}",
        ["task", "episodes", "fused head", "camera head"],
        start_rows,
    )

    rows, phases, successes, reached = [], {}, {}, {}
    closings: dict[str, list[dict]] = {}  # task -> first closing of each episode
    for task in args.tasks:
        per_phase: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        visited: set[str] = set()
        ticks: list[_Tick] = []  # of the running episode of a grasping task
        grasps = task.split()[0] in GRASP_TASKS

        def on_step(obs, action, per_phase=per_phase, visited=visited, ticks=ticks, grasps=grasps):
            ps = privileged_state(base)
            fused, camera, belief, goal = _heads(model, ps, obs, base.instruction)
            held = float(ps.held)
            plan = expert_plan(base)
            if grasps:
                ticks.append(_grasp_tick(base, ps, float(action[6]), plan.phase, fused, goal))
            expert = plan_action(base.scene, plan)
            step_err = float(np.linalg.norm(action[:2] - expert[:2]))
            per_phase[plan.phase].append(
                (fused, camera, step_err, action[2], expert[2], belief, held, action[6], expert[6])
            )
            visited.add(plan.phase)

        wins = 0
        episodes_in: dict[str, int] = defaultdict(int)  # phase -> episodes that visited it
        for seed in range(args.episodes):
            visited.clear()
            ticks.clear()
            success = run_episode(env, policy, task=task, seed=seed, on_step=on_step).success
            wins += success
            for phase in visited:
                episodes_in[phase] += 1
            first = _first_closing(ticks)
            if first is not None:
                if first["held"] and not success:
                    first["lost"] = _first_loss(ticks, first["tick"])
                closings.setdefault(task, []).append({"seed": seed, "success": success, **first})
        successes[task] = wins
        reached[task] = dict(episodes_in)
        phases[task] = {}
        for phase, values in per_phase.items():
            v = np.array(values)
            fused, camera, step_err, dz, expert_dz = np.nanmedian(v[:, :5], axis=0) * 100
            belief, held, grip, expert_grip = np.nanmean(v[:, 5:], axis=0)  # shares: means
            phases[task][phase] = {
                "ticks": len(values),
                "fused_xy_cm": float(fused),
                "camera_xy_cm": float(camera),
                "step_xy_err_cm": float(step_err),
                "policy_dz_cm": float(dz),
                "expert_dz_cm": float(expert_dz),
                "held_belief": float(belief),
                "held_true": float(held),
                "gripper_policy": float(grip),
                "gripper_expert": float(expert_grip),
            }
            rows.append(
                [
                    f"{task} ({wins}/{args.episodes})",
                    phase,
                    episodes_in[phase],
                    len(values),
                    f"{fused:.2f}",
                    f"{camera:.2f}",
                    f"{step_err:.2f}",
                    f"{dz:+.2f} / {expert_dz:+.2f}",
                    f"{belief:.2f} / {held:.2f}",
                    f"{grip:.2f} / {expert_grip:.2f}",
                ]
            )
    print_table(
        f"closed loop by the expert's phase of each visited state (medians, cm; held and "
        f"gripper: means; "
        f"load {os.getloadavg()[0]:.2f})",
        [
            "task (successes)",
            "phase",
            "episodes in it",
            "ticks",
            "fused x-y err",
            "camera x-y err",
            "x-y step vs expert",
            "dz policy / expert",
            "held: belief / true",
            "gripper policy / expert",
        ],
        rows,
    )
    grasp_rows = []
    for task, eps in closings.items():
        for held in (True, False):
            sel = [e for e in eps if e["held"] == held]
            if sel:
                med = {
                    k: float(np.median([e[k] for e in sel]))
                    for k in ("tick", "xy_cm", "dz_cm", "yaw_deg", "head_xy_cm", "along_fingers_cm")
                }
                past = sum(e["along_fingers_cm"] > e["clearance_cm"] for e in sel)
                near = [sum(e["nearest"] == n for e in sel) for n in ("named", "base", "other")]
                grasp_rows.append(
                    [
                        task,
                        "holds the block" if held else "misses",
                        len(sel),
                        sum(e["success"] for e in sel),
                        f"{med['tick']:.0f}",
                        f"{med['xy_cm']:.2f}",
                        f"{med['dz_cm']:+.2f}",
                        f"{med['yaw_deg']:.1f}",
                        f"{med['head_xy_cm']:.2f}",
                        f"{med['along_fingers_cm']:.2f}",
                        past,
                        " / ".join(map(str, near)),
                    ]
                )
    if grasp_rows:
        print_table(
            "first closing of the gripper per episode, against the expert's grasp point (medians)",
            [
                "task",
                "5 ticks later",
                "episodes",
                "of them succeed",
                "tick",
                "x-y (cm)",
                "height (cm)",
                "tool yaw off (deg)",
                "fused head x-y err (cm)",
                "along the fingers' axis (cm)",
                "that by more than the open pads clear",
                "nearest block: named / base / other",
            ],
            grasp_rows,
        )
    lost_rows = []
    for task, eps in closings.items():
        lost = [e["lost"] for e in eps if "lost" in e]
        for key in sorted({(x["phase"], x["how"]) for x in lost}):
            sel = [x for x in lost if (x["phase"], x["how"]) == key]
            med = {
                k: np.median([x.get(k, np.nan) for x in sel])
                for k in ("tick", "goal_xy_cm", "goal_dz_cm", "goal_head_xy_cm")
            }
            lost_rows.append(
                [
                    task,
                    *key,
                    len(sel),
                    f"{med['tick']:.0f}",
                    f"{med['goal_xy_cm']:.1f}",
                    f"{med['goal_dz_cm']:+.1f}",
                    f"{med['goal_head_xy_cm']:.1f}",
                ]
            )
    if lost_rows:
        print_table(
            "first closing held, episode failed: where the block was lost (medians)",
            [
                "task",
                "phase at the last held tick",
                "how",
                "episodes",
                "tick",
                "block to goal x-y (cm)",
                "block bottom above goal (cm)",
                "goal head x-y err (cm)",
            ],
            lost_rows,
        )
    write_json(
        args.json,
        {
            "bench": "closed_loop_probe",
            "checkpoint": args.checkpoint,
            "episodes": args.episodes,
            "starts": args.starts,
            "first_tick": starts,
            "successes": successes,
            "episodes_in_phase": reached,
            "phases": phases,
            "first_closing": closings,
        },
    )


if __name__ == "__main__":
    main()
