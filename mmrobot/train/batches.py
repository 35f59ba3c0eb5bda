"""One training step's batch: which samples, their target tokens, augmentation and the
sample levers (task relabelling, colour swap), and the stack-swap camera-head losses.

Every draw comes from a generator seeded by (seed, step, purpose), so a resumed run draws
the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from mmrobot.core.errors import ConfigError
from mmrobot.envs.projection import CameraProjection
from mmrobot.policies import ActionTokenizer, FusionPolicyModel, PolicyConfig
from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, stream_keys
from mmrobot.policies.model import batch_to_torch
from mmrobot.train.config import TrainConfig
from mmrobot.train.data import ChunkSamples, draw_indices
from mmrobot.train.relabel import SampleLevers
from mmrobot.train.step import IGNORE_TOKEN, augment_images, aux_loss

__all__ = ["BatchMaker", "chunk_targets", "map_projection"]


def chunk_targets(action_tokenizer: ActionTokenizer, samples: ChunkSamples) -> np.ndarray:
    """(N, H, D) target tokens of every sample; chunk positions past an excursion of a
    perturbed demonstration (:attr:`ChunkSamples.chunk_coherent`) are :data:`IGNORE_TOKEN`."""
    tokens = action_tokenizer.encode(samples.chunks)
    tokens[~samples.chunk_coherent] = IGNORE_TOKEN
    return tokens


def map_projection(config: PolicyConfig) -> CameraProjection | None:
    """The projection into the ``training.camera_map_stream`` camera's images, read from the
    simulated scene (a camera of the same name fixed to the base), or None without
    ``training.camera_map``. Needs the ``sim`` extra (MuJoCo)."""
    t = config.training
    if not t.camera_maps:
        return None
    from mmrobot.core.extras import Need, require_extras

    require_extras([Need("sim")], "training.camera_map (the camera's pose from the scene)")
    from mmrobot.envs.scene import Scene

    name = t.camera_map_stream
    h, w = next(s for s in config.streams if s.name == name).shape[:2]
    scene = Scene()
    try:
        cameras = scene.fixed_cameras()
        if name not in cameras:
            raise ConfigError(
                f"training.camera_map_stream {name!r}: the scene {str(scene.path)!r} has no "
                f"camera of that name fixed to the base (fixed cameras: {cameras}); the maps' "
                "targets are positions projected into a camera that does not move"
            )
        return scene.camera_projection(name, h, w)
    finally:
        scene.close()


def _rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, step, purpose): stateless, so resumable."""
    return np.random.default_rng([seed, step, stream])


class BatchMaker:
    """Makes each step's batch for one rank of ``world`` (each rank takes its slice of one
    global draw) on ``device``. With ``projection`` (:func:`map_projection`), the camera maps'
    targets: where each map's position lies in the (shifted) image, ``<name>_px``."""

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        rank: int,
        world: int,
        projection: CameraProjection | None = None,
    ) -> None:
        self.config, self.device, self.rank, self.world = config, device, rank, world
        self.projection = projection
        self._levers: SampleLevers | None = None  # made at the first batch (needs max_len)

    def batch(
        self, samples: ChunkSamples, config: PolicyConfig, targets: np.ndarray, step: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], np.ndarray]:
        """Inputs, (B, H, D) target tokens, auxiliary targets and sample indices of one
        step's batch."""
        c = self.config
        rng = _rng(c.seed, step, 0)
        global_idx = draw_indices(
            rng, len(samples), samples.demo_samples, c.batch_size * self.world, c.dagger.weight
        )
        idx = global_idx[self.rank * c.batch_size : (self.rank + 1) * c.batch_size]
        batch, _ = samples.batch(idx)
        aux_np = {n: np.ascontiguousarray(v[idx]) for n, v in samples.aux.items()}
        tokens_np = targets[idx]  # a copy: relabelling may ignore some positions
        if c.task_relabel or c.color_swap:
            if self._levers is None:
                self._levers = SampleLevers(c.task_relabel, c.color_swap, config.language.max_len)
            self._levers.apply(
                samples,
                idx,
                batch,
                tokens_np,
                aux_np,
                [stream_keys(s.name)[0] for s in config.streams if s.modality == "camera"],
                relabel_rng=_rng(c.seed, step, 4),
                color_rng=_rng(c.seed, step, 3),
            )
        offsets = np.zeros((len(idx), 2))  # how far the map camera's image content moved
        if c.augment:
            aug = _rng(c.seed, step, 1)
            for s in config.streams:
                if s.modality == "camera":
                    key = stream_keys(s.name)[0]
                    batch[key], moved = augment_images(
                        batch[key], aug, c.shift_px, c.color_jitter, return_offsets=True
                    )
                    if s.name == config.training.camera_map_stream:
                        offsets = moved
        if self.projection is not None:
            p = self.projection
            moved = (offsets / np.array([p.width, p.height])).astype(np.float32)
            for name in config.training.camera_maps:  # base-frame position -> image fraction
                aux_np[f"{name}_px"] = p.fractions(aux_np[name] + aux_np["tcp"]) + moved
        aux = {n: torch.from_numpy(v).to(self.device) for n, v in aux_np.items()}
        tokens = torch.from_numpy(tokens_np).to(self.device)
        return batch_to_torch(batch, self.device), tokens, aux, idx

    def swap_losses(
        self,
        model: FusionPolicyModel,
        samples: ChunkSamples,
        batch: dict[str, torch.Tensor],
        aux: dict[str, torch.Tensor],
        idx: np.ndarray,
        step: int,
    ) -> dict[str, torch.Tensor]:
        """Camera-head losses on a share ``stack_swap`` of the batch's stack samples, read with
        the instruction whose blocks' roles are swapped: the base block is then the one
        named first, so the ``block_rel`` head must find the base and ``goal_rel`` the moved
        block. Only word order tells the two readings of the same image apart."""
        ep = samples.episode_of[idx]
        chosen = samples.swappable[ep] & (
            _rng(self.config.seed, step, 2).random(len(idx)) < self.config.stack_swap
        )
        if not chosen.any():
            return {}
        rows = torch.from_numpy(np.flatnonzero(chosen)).to(self.device)
        sub = {k: v[rows] for k, v in batch.items()}
        sub[INSTRUCTION_TOKENS] = torch.from_numpy(samples.swap_ids[ep[chosen]]).to(self.device)
        sub[INSTRUCTION_MASK] = torch.from_numpy(samples.swap_mask[ep[chosen]]).to(self.device)
        swapped = {"block_rel": aux["goal_rel"][rows], "goal_rel": aux["block_rel"][rows]}
        _, _, _, summary, _ = model.encode(sub)
        pred = {  # the position heads only: the block's turn has no swapped reading
            n: p for n, p in model.camera_aux(summary).items() if n[len("camera/") :] in swapped
        }
        losses = aux_loss(pred, {**swapped, "tcp": aux["tcp"][rows]})
        return {f"swap/{n}": v for n, v in losses.items()}
