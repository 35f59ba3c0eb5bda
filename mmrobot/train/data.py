"""Training samples from a demonstration dataset: (observation, instruction, action chunk).

Sample ``(episode, t)`` pairs the observation the expert acted on at step ``t`` with its
actions at ``t .. t + H - 1``. Past the end of the episode the chunk continues with a
"hold" action (no motion, the last gripper command), which is what the robot should do once
the task is done.

Everything that does not change between epochs is computed once, when the dataset is
loaded: every stream becomes one contiguous array over all samples, instructions are
tokenized once per episode, and action chunks are cut once. A training batch is then a
handful of fancy-indexing operations (:meth:`ChunkSamples.batch`), with no Python work per
sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation, StreamSpec
from mmrobot.envs.dataset import DemoDataset
from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, stream_keys
from mmrobot.policies.config import ActionConfig, NormStats, PolicyConfig
from mmrobot.policies.tokenizers import ActionTokenizer, ByteTokenizer

__all__ = [
    "NO_FACE_TURN",
    "ChunkSamples",
    "hold_action",
    "action_chunk",
    "action_chunks",
    "coherent_positions",
    "draw_indices",
    "fit_policy_config",
]


def hold_action(last_action: np.ndarray) -> np.ndarray:
    """Zero end-effector motion with the gripper command of ``last_action`` (7,)."""
    out = np.zeros_like(last_action)
    out[-1] = last_action[-1]
    return out


def action_chunk(actions: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """(H, D) actions from step ``t`` of an episode's (T, D) actions, padded with holds."""
    return action_chunks(actions, horizon)[t]


def coherent_positions(perturbed: np.ndarray, horizon: int) -> np.ndarray:
    """(T, H) bool: which positions of each step's action chunk are labels of states that the
    chunk's own earlier actions lead to.

    A chunk's targets are the labels of steps t..t+H-1. Where step t+i was perturbed (the
    executed action was not its label), the states after it were not reached by the label,
    so positions j > i of the chunk of step t are incoherent. Position 0 always counts;
    positions past the episode's end (hold padding) count as before."""
    off = np.asarray(perturbed, bool)
    n = len(off)
    out = np.ones((n, horizon), dtype=bool)
    for t in np.flatnonzero(off):  # each perturbed step cuts the chunks that span it
        for j in range(1, horizon):
            start = t + 1 - j  # the chunk of step `start` reaches step t at position j - 1
            if 0 <= start < n:
                out[start, j:] = False
    return out


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """(T, H, D): the chunk of every step of an episode's (T, D) actions, padded with holds."""
    n = len(actions)
    padded = np.concatenate([actions, np.repeat(hold_action(actions[-1])[None], horizon, 0)])
    idx = np.arange(n)[:, None] + np.arange(horizon)[None, :]
    return padded[idx]


def swapped_stack_instruction(task: str, split: str, seed: int) -> str | None:
    """An instruction for the stack ``task`` spec with the moved and the base block swapped
    ("stack the blue cube on the red one" for "stack the red cube on the blue one"), in the
    phrasing set ``split``; None for other tasks. The same scene then asks for the other
    block: only the order of the words says which (docs/policy-trials.md, vision_probe
    --set swap)."""
    from mmrobot.envs.instructions import SPLITS, make_instruction
    from mmrobot.envs.tasks import TaskSpec

    if task.split()[:1] != ["stack"]:
        return None
    spec = TaskSpec.parse(task)
    if not spec.complete:
        return None
    p = dict(spec.params)
    p["color"], p["base_color"] = p["base_color"], p["color"]
    p["size"], p["base_size"] = p["base_size"], p["size"]
    rng = np.random.default_rng(seed)
    return make_instruction(TaskSpec("stack", p), rng, split if split in SPLITS else "train")


class ChunkSamples:
    """Training samples of a :class:`DemoDataset`, held in memory as contiguous arrays.

    Args:
        demos: the dataset.
        specs: the policy's observation spec; every stream must be in the dataset with the
            same shape and dtype.
        horizon: action chunk length H.
        max_len: instruction length of the policy's byte tokenizer.
        episodes: which episodes to use (default: all successful ones).
        aux: privileged targets to load (names of :data:`~mmrobot.policies.config.AUX_TARGETS`);
            the dataset must carry them.
        extra: more datasets whose every episode is used, failed or not (DAgger rounds: the
            expert labelled every state the policy visited).
    """

    def __init__(
        self,
        demos: DemoDataset,
        specs: Sequence[StreamSpec],
        horizon: int,
        max_len: int = 64,
        episodes: Sequence[int] | None = None,
        aux: Sequence[str] = (),
        extra: Sequence[DemoDataset] = (),
    ) -> None:
        self.demos = demos
        self.specs = tuple(specs)
        self.horizon = horizon
        for ds in (demos, *extra):
            self._check_streams(ds)
        if episodes is None:
            episodes = [e.index for e in demos.episodes() if e.success]
        if not episodes:
            raise ConfigError(f"dataset {str(demos.path)!r} has no successful episodes to train on")
        #: (dataset, episode index) of every used episode
        self.episodes = [(demos, e) for e in episodes] + [
            (ds, e) for ds in extra for e in range(len(ds))
        ]
        tokenizer = ByteTokenizer(max_len)
        swap_ids, swap_masks, swappable = [], [], []
        values: dict[str, list[np.ndarray]] = {s.name: [] for s in self.specs}
        valid: dict[str, list[np.ndarray]] = {s.name: [] for s in self.specs}
        ages: dict[str, list[np.ndarray]] = {s.name: [] for s in self.specs}
        aux_parts: dict[str, list[np.ndarray]] = {name: [] for name in aux}
        chunks, actions, ep_of, steps, ids, masks, tasks = [], [], [], [], [], [], []
        coherent, pregrasp, block_start, tcp = [], [], [], []
        for k, (ds, e) in enumerate(self.episodes):
            try:  # every array is read here, once: a damaged chunk fails now, named
                info = ds.info(e)
                g = ds._group(e)
                obs = g["obs"]
                for s in self.specs:
                    values[s.name].append(obs["values"][s.name][()])
                    valid[s.name].append(obs["valid"][s.name][()].astype(bool))
                    ages[s.name].append(obs["ages_ns"][s.name][()].astype(np.int64))
                a = g["actions"][()].astype(np.float32)
                off = ds.perturbed(e)
            except (OSError, KeyError) as err:
                raise ds.unreadable(e, err) from None
            have_aux = ds.aux(e, (*aux, *_GRASP_TARGETS))
            if aux:
                missing = [n for n in aux if n not in have_aux]
                if missing:
                    raise ConfigError(
                        f"dataset {str(ds.path)!r} has no privileged target(s) {missing} that "
                        "training.aux_weights asks for; collect the dataset again with this "
                        "mmrobot (mmrobot collect) or set their weights to 0"
                    )
                for n in aux:
                    target = np.asarray(have_aux[n])
                    if n == "block_yaw" and info.task.split()[0] in NO_FACE_TURN:
                        target = np.full_like(target, np.nan)  # no target: left out of the loss
                    aux_parts[n].append(target)
            grasp = _grasp_facts(have_aux, len(a), horizon)
            pregrasp.append(grasp[0])
            block_start.append(np.broadcast_to(grasp[1], (len(a), 3)))
            tcp.append(grasp[2])
            actions.append(a)
            chunks.append(action_chunks(a, horizon))
            coherent.append(coherent_positions(off, horizon))
            ep_of.append(np.full(len(a), k, dtype=np.int64))
            steps.append(np.arange(len(a), dtype=np.int64))
            i, m = tokenizer.encode(info.instruction)
            ids.append(i)
            masks.append(m)
            tasks.append(info.task)
            swapped = swapped_stack_instruction(info.task, info.split, seed=k)
            si, sm = tokenizer.encode(swapped) if swapped else (i, m)
            swap_ids.append(si)
            swap_masks.append(sm)
            swappable.append(swapped is not None)
        self.values = {n: np.concatenate(v) for n, v in values.items()}
        self.valid = {n: np.concatenate(v) for n, v in valid.items()}
        self.ages_ns = {n: np.concatenate(v) for n, v in ages.items()}
        self.aux = {n: np.concatenate(v) for n, v in aux_parts.items()}
        self.chunks = np.concatenate(chunks)  # (N, H, D) float32
        #: (N, H) bool: chunk positions trained on (False: past an excursion, see
        #: :func:`coherent_positions`)
        self.chunk_coherent = np.concatenate(coherent)
        self._actions = np.concatenate(actions)
        self.episode_of = np.concatenate(ep_of)  # (N,) position in self.episodes
        #: samples of ``demos``; those of ``extra`` follow them
        self.demo_samples = int(np.searchsorted(self.episode_of, len(episodes)))
        self.step_of = np.concatenate(steps)
        self.instruction_ids = np.stack(ids)  # (E, L)
        self.instruction_mask = np.stack(masks)
        self.tasks = tasks
        self.instructions = [ds.info(e).instruction for ds, e in self.episodes]
        #: per episode: a stack instruction with the two blocks' roles swapped (its ids and
        #: mask; other episodes keep their own), for the camera heads' swapped targets
        self.swap_ids = np.stack(swap_ids)
        self.swap_mask = np.stack(swap_masks)
        self.swappable = np.array(swappable, dtype=bool)
        #: (N,) chunk positions of each sample before its episode's first held step (the
        #: whole horizon when never held; 0 without a ``held`` target)
        self.pregrasp = np.concatenate(pregrasp)
        #: (N, 3) the named block's position at its episode's start (NaN where unknown)
        self.block_start = np.concatenate(block_start)
        #: (N, 3) the TCP position of each sample (NaN where unknown)
        self.tcp = np.concatenate(tcp)

    def _check_streams(self, ds: DemoDataset) -> None:
        have = {s.name: s for s in ds.specs}
        for s in self.specs:
            d = have.get(s.name)
            if d is None:
                raise ConfigError(
                    f"dataset {str(ds.path)!r} has no stream {s.name!r} that the policy needs; "
                    f"it has {sorted(have)}; collect again (mmrobot collect) or change the "
                    "policy config's [[streams]]"
                )
            if d.obs_shape != s.obs_shape or d.dtype != s.dtype:
                raise ConfigError(
                    f"stream {s.name!r}: dataset has {d.obs_shape} {d.dtype}, the policy expects "
                    f"{s.obs_shape} {s.dtype}; collect again or change the policy config"
                )

    def __len__(self) -> int:
        return len(self.chunks)

    def locate(self, index: int) -> tuple[int, int]:
        """(episode index in its dataset, step) of sample ``index``."""
        return self.episodes[int(self.episode_of[index])][1], int(self.step_of[index])

    def batch(self, indices: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The network's input arrays (as :func:`~mmrobot.policies.collate` makes them) and
        the (B, H, D) float32 action chunks of samples ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        ep = self.episode_of[idx]
        out = {
            INSTRUCTION_TOKENS: self.instruction_ids[ep],
            INSTRUCTION_MASK: self.instruction_mask[ep],
        }
        for s in self.specs:
            k_val, k_valid, k_age = stream_keys(s.name)
            ok = self.valid[s.name][idx]
            v = self.values[s.name][idx]
            v[~ok] = 0  # as collate: invalid streams carry zeros and age 0
            out[k_val], out[k_valid] = v, ok
            out[k_age] = np.where(ok, self.ages_ns[s.name][idx], 0)
        return out, self.chunks[idx]

    def sample(self, index: int) -> tuple[Observation, str, np.ndarray]:
        """(observation, instruction, (H, D) float32 action chunk) of sample ``index``."""
        names = [s.name for s in self.specs]
        obs = Observation(
            t_ns=int(self.step_of[index]),
            values={n: self.values[n][index] for n in names},
            ages_ns={n: int(self.ages_ns[n][index]) for n in names},
            valid={n: bool(self.valid[n][index]) for n in names},
        )
        return obs, self.instructions[int(self.episode_of[index])], self.chunks[index]

    def all_actions(self) -> np.ndarray:
        """(N, D) every action of the used episodes (for quantile bins)."""
        return self._actions

    def stream_values(self, name: str, max_samples: int = 20000) -> np.ndarray:
        """Valid values of one stream (up to ``max_samples`` steps; for normalization)."""
        return self.values[name][self.valid[name]][:max_samples]


#: Tasks whose expert does not turn the tool to the named block's faces (push turns it to
#: the push direction): their samples' ``block_yaw`` targets are NaN, which the loss leaves
#: out. (v18, whose turn heads also trained on push's samples, solved push in 20 of 40
#: episodes against v16's 31 without the camera turn head: docs/policy-trials.md, trial v18.)
NO_FACE_TURN = ("push",)

#: the privileged targets :func:`_grasp_facts` reads
_GRASP_TARGETS = ("held", "tcp", "block_rel")


def _grasp_facts(
    aux: dict[str, np.ndarray], n: int, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pregrasp (n,), block start (3,), tcp (n, 3)) of an episode from its privileged
    targets (see :attr:`ChunkSamples.pregrasp`)."""
    nan = np.full(3, np.nan)
    if "held" not in aux:
        return np.zeros(n, np.int64), nan, np.full((n, 3), np.nan)
    held = np.flatnonzero(np.asarray(aux["held"], bool))
    first = int(held[0]) if len(held) else n + horizon
    pregrasp = np.clip(first - np.arange(n), 0, horizon).astype(np.int64)
    if "tcp" not in aux or "block_rel" not in aux:
        return pregrasp, nan, np.full((n, 3), np.nan)
    tcp = np.asarray(aux["tcp"], np.float64)
    return pregrasp, np.asarray(aux["block_rel"][0], np.float64) + tcp[0], tcp


def fit_policy_config(
    samples: ChunkSamples, base: PolicyConfig, action_binning: str = "uniform"
) -> PolicyConfig:
    """``base`` with normalization statistics, and with ``action_binning = "quantile"`` the
    action bins, read from the training samples."""
    norm = dict(base.normalization)
    for s in base.streams:
        if s.modality in ("camera", "depth") or s.name in norm:
            continue
        values = samples.stream_values(s.name)
        if s.modality == "lidar" and len(values):
            pts = values.reshape(-1, values.shape[-1])
            values = pts[np.abs(pts).sum(-1) > 0]  # a ray with no return is (0, 0, 0)
        if len(values):
            norm[s.name] = NormStats.from_data(values, min_std=1e-3)
    action = base.action
    if action_binning == "quantile":
        tok = ActionTokenizer.from_quantiles(
            samples.all_actions(), action.low, action.high, action.bins
        )
        action = ActionConfig(
            dim=action.dim,
            horizon=action.horizon,
            bins=action.bins,
            low=action.low,
            high=action.high,
            period_ns=action.period_ns,
            binning="quantile",
            edges=tuple(tuple(r) for r in tok.edges),
        )
    return base.replace(normalization=norm, action=action)


def draw_indices(
    rng: np.random.Generator, n: int, n_demo: int, size: int, dagger_weight: float = 0.0
) -> np.ndarray:
    """``size`` sample indices out of ``n``, of which the first ``n_demo`` are demonstrations
    and the rest DAgger states: uniform, or with ``dagger_weight`` > 0 (and DAgger states
    present) each index a DAgger state with that probability."""
    if not dagger_weight or n == n_demo:
        return rng.integers(0, n, size)
    from_rounds = rng.random(size) < dagger_weight
    return np.where(from_rounds, rng.integers(n_demo, n, size), rng.integers(0, n_demo, size))
