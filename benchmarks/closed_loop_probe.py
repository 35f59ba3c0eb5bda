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
problem, not a closed-loop one).

Usage: python benchmarks/closed_loop_probe.py --checkpoint policies/release
           [--tasks reach pick place stack] [--episodes 3] [--starts 24] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _heads(model, env, obs, instruction: str) -> tuple[float, float, float, float]:
    """x-y error (m) of the fused and the camera block heads in the env's current state, the
    ``held`` head's probability and the truth (1 held, 0 not)."""
    import torch

    from mmrobot.envs.privileged import privileged_state
    from mmrobot.policies.collate import collate
    from mmrobot.policies.model import batch_to_torch

    ps = privileged_state(env)
    batch = collate([obs], [instruction], model.config.streams, model.tokenizer)
    with torch.inference_mode():
        _, aux = model(batch_to_torch(batch), with_aux=True)
    nan = float("nan")
    fused = camera = nan
    if "block_rel" in aux:  # heads predict centimetres
        fused = float(np.linalg.norm(aux["block_rel"][0, :2].numpy() / 100 - ps.block_rel[:2]))
    if "camera/block_rel" in aux:  # in the base frame
        cam = aux["camera/block_rel"][0, :2].numpy() / 100 - ps.tcp[:2]
        camera = float(np.linalg.norm(cam - ps.block_rel[:2]))
    belief = float(torch.sigmoid(aux["held"][0].reshape(-1)[0])) if "held" in aux else nan
    return fused, camera, belief, float(ps.held)


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
            errs.append(_heads(model, base, base.observation, str(info["instruction"]))[:2])
        fused, camera = np.nanmedian(np.array(errs), axis=0) * 100
        starts[task] = {"fused_xy_cm": float(fused), "camera_xy_cm": float(camera)}
        start_rows.append([task, args.starts, f"{fused:.2f}", f"{camera:.2f}"])
    print_table(
        f"block x-y error at the first tick (median, cm): {args.checkpoint}",
        ["task", "episodes", "fused head", "camera head"],
        start_rows,
    )

    rows, phases, successes, reached = [], {}, {}, {}
    for task in args.tasks:
        per_phase: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        visited: set[str] = set()

        def on_step(obs, action, per_phase=per_phase, visited=visited):
            plan = expert_plan(base)
            expert = plan_action(base.scene, plan)
            fused, camera, belief, held = _heads(model, base, obs, base.instruction)
            step_err = float(np.linalg.norm(action[:2] - expert[:2]))
            per_phase[plan.phase].append(
                (fused, camera, step_err, action[2], expert[2], belief, held, action[6], expert[6])
            )
            visited.add(plan.phase)

        wins = 0
        episodes_in: dict[str, int] = defaultdict(int)  # phase -> episodes that visited it
        for seed in range(args.episodes):
            visited.clear()
            wins += run_episode(env, policy, task=task, seed=seed, on_step=on_step).success
            for phase in visited:
                episodes_in[phase] += 1
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
        },
    )


if __name__ == "__main__":
    main()
