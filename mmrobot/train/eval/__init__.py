"""Closed-loop evaluation of a policy in the MuJoCo tabletop simulation.

Each episode runs the policy exactly as the deployed control loop does
(:mod:`mmrobot.deploy.loop`): at every control tick the policy sees the
:class:`~mmrobot.core.Observation` that the env's :class:`~mmrobot.sync.Synchronizer` made
from the simulated drivers' :class:`~mmrobot.sync.StreamBuffer` s; a new action chunk is
requested every ``replan_every`` ticks (and whenever no chunk covers the current tick), and
the action for the tick is the :class:`~mmrobot.deploy.loop.TemporalEnsembler` combination
of every chunk that covers it. A chunk with a non-finite action is rejected (counted).

The action then takes ``mmrobot run``'s path to the arm (:class:`~mmrobot.deploy.safety.
SimSafety`, the same object :class:`~mmrobot.launch.sim.SimSession` uses): the Cartesian
controller turns it into joint targets, the :class:`~mmrobot.deploy.SafetyLayer` clamps
them to the limits (default: those of a launch file that does not change them,
:class:`~mmrobot.deploy.safety.SafetyConfig`) or holds, and the env applies the joint
targets. A tick that no accepted chunk covers holds. Every episode reports its safety events
per reason and its held ticks. With ``safety=False`` (``--no-safety``, for comparison) the
env applies the end-effector action itself and there is no layer.

Splits (the same seeds in every split; the same initial layouts except where noted):

* ``train``: instructions generated from the training phrasings, all sensors on;
* ``heldout``: instructions from the held-out phrasings, all sensors on (drawn from the same
  random stream before the layout, so the layouts can differ from ``train``'s);
* ``instruction_swap``: the scene of the task's episode (same seed, same blocks in the same
  places), but the instruction (training phrasings) names another block on the table, and
  success is counted against that block: does the instruction, not habit, choose the block?
* ``randomized``: training phrasings, with domain randomization on (the perturbations are
  drawn before the layout, so the layouts differ from ``train``'s);
* ``no_camera``, ``no_lidar``, ``no_force``, ``no_joints``: training phrasings, and every
  stream of that modality configured to drop all its samples (``SensorConfig.dropout = 1``),
  so its buffer stays empty and the synchronizer marks it invalid, as with a dead sensor on
  a real rig (nothing edits observations);
* ``instructions`` (with a user's instructions file): the file's task and instruction per
  line, all sensors on.

Episode ``k`` (0-based) of every task and split is reset with seed ``seed + k``. Success is
the env's own detector (``info["is_success"]``). Rates come with a 95 % Wilson score interval
(:func:`wilson_interval`). Episodes run in worker processes (``spawn`` or ``forkserver``: a GL
context does not survive ``fork``); each worker builds its envs and loads the policy itself,
with ``torch.set_num_threads(1)``.

Modules, in the order a run uses them:

* :mod:`~mmrobot.train.eval.settings`: split names and :class:`EvalSettings`;
* :mod:`~mmrobot.train.eval.instructions`: task specs and instructions files;
* :mod:`~mmrobot.train.eval.policies`: loading the policy, the scripted expert as a policy;
* :mod:`~mmrobot.train.eval.envs`: the simulated env for a policy and a split;
* :mod:`~mmrobot.train.eval.episode`: the episode runner;
* :mod:`~mmrobot.train.eval.pool`: the parallel runner (jobs, worker processes);
* :mod:`~mmrobot.train.eval.results`: results and statistics (Wilson intervals);
* :mod:`~mmrobot.train.eval.report`: reporting (JSON, tables, progress);
* :mod:`~mmrobot.train.eval.run`: the entry points :func:`evaluate` and :func:`quick_success`.

``mmrobot.train.evaluate``, the earlier import path, re-exports the same names.
"""

from mmrobot.train.eval.envs import env_config_for_policy, make_eval_env, split_env_config
from mmrobot.train.eval.episode import EpisodeResult, run_episode, swap_instruction_target
from mmrobot.train.eval.instructions import InstructionLine, all_task_specs, load_instructions
from mmrobot.train.eval.policies import (
    PolicySource,
    ScriptedExpertPolicy,
    expert_policy_factory,
    load_policy,
    policy_stream_specs,
)
from mmrobot.train.eval.results import EvalResult, SafetyStats, SuccessStats, wilson_interval
from mmrobot.train.eval.run import evaluate, quick_success
from mmrobot.train.eval.settings import (
    DEFAULT_SPLITS,
    EVAL_FORMAT_VERSION,
    INSTRUCTIONS_SPLIT,
    MODALITY_SPLITS,
    RANDOMIZED_SPLIT,
    SPLIT_NAMES,
    SWAP_SPLIT,
    EvalSettings,
)

__all__ = [
    "DEFAULT_SPLITS",
    "EVAL_FORMAT_VERSION",
    "INSTRUCTIONS_SPLIT",
    "MODALITY_SPLITS",
    "RANDOMIZED_SPLIT",
    "SPLIT_NAMES",
    "SWAP_SPLIT",
    "EpisodeResult",
    "EvalResult",
    "EvalSettings",
    "InstructionLine",
    "PolicySource",
    "SafetyStats",
    "ScriptedExpertPolicy",
    "SuccessStats",
    "all_task_specs",
    "env_config_for_policy",
    "evaluate",
    "expert_policy_factory",
    "load_instructions",
    "load_policy",
    "make_eval_env",
    "policy_stream_specs",
    "quick_success",
    "run_episode",
    "split_env_config",
    "swap_instruction_target",
    "wilson_interval",
]
