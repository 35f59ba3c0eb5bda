"""What one training step is made of: image augmentation, the losses and the optimizer.

Shared by the trainer (:mod:`mmrobot.train.trainer`) and the benchmarks, so that what they
measure is what the trainer runs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from mmrobot.policies.config import AUX_TARGETS
from mmrobot.train.config import STAGES

__all__ = [
    "augment_images",
    "aux_loss",
    "make_optimizer",
    "map_loss",
    "map_targets",
    "set_camera_offsets",
    "token_loss",
    "IGNORE_TOKEN",
    "training_loss",
    "weights_digest",
]


def augment_images(
    images: np.ndarray,
    rng: np.random.Generator,
    shift_px: int,
    jitter: float,
    return_offsets: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Random shift (replicate padding, then crop) and brightness/contrast jitter.

    Args:
        images: (B, H, W, C) uint8.
        return_offsets: also return how far each image's content moved.

    Returns:
        (B, H, W, C) uint8, a new array; with ``return_offsets`` also (B, 2) int64, the
        pixels each image's content moved right and down (what was at column ``u`` is at
        ``u + offsets[:, 0]``).
    """
    b, h, w, _ = images.shape
    out = np.empty_like(images)
    offsets = np.zeros((b, 2), dtype=np.int64)
    if shift_px:
        padded = np.pad(images, ((0, 0), (shift_px,) * 2, (shift_px,) * 2, (0, 0)), mode="edge")
        dy = rng.integers(0, 2 * shift_px + 1, b)
        dx = rng.integers(0, 2 * shift_px + 1, b)
        for i in range(b):
            out[i] = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        offsets = np.stack([shift_px - dx, shift_px - dy], axis=1)
    else:
        out[:] = images
    if jitter:
        x = out.astype(np.float32)
        brightness = rng.uniform(1 - jitter, 1 + jitter, (b, 1, 1, 1)).astype(np.float32)
        contrast = rng.uniform(1 - jitter, 1 + jitter, (b, 1, 1, 1)).astype(np.float32)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * contrast + mean * brightness
        out = np.clip(x, 0, 255).astype(np.uint8)
    return (out, offsets) if return_offsets else out


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The trainer's AdamW: no weight decay on norms, biases, embeddings, queries, positions."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (
            decay
            if p.ndim >= 2
            and "embedding" not in name
            and "position" not in name
            and "query" not in name
            else no_decay
        ).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
        # One fused kernel for all parameters instead of ~10 small ops per tensor: the
        # optimizer was 10 % of a CPU training step.
        fused=True,
    )


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def aux_loss(
    predictions: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    camera_far_m: float = 0.0,
    camera_near_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Loss of each auxiliary head (see :data:`~mmrobot.policies.config.AUX_TARGETS`).

    A ``camera/<name>`` position prediction (``training.encoder_aux``) is compared with
    ``<name>`` plus ``targets["tcp"]``, the position in the base frame; ``camera/block_yaw``
    with ``block_yaw`` itself.

    With ``camera_far_m`` > 0 a camera head's error is a weighted mean: a sample whose
    gripper is at least that far (x-y) from the named block (``block_rel``) weighs 1, a
    nearer one ``camera_near_weight`` (0: left out). Nearer, the image shows "the block by
    the gripper", a cue that does not need the instruction's words.

    ``vector`` targets: mean squared error in centimetres (the targets are metres, so that a
    weight of 1 is about as strong as the token cross-entropy); ``angle`` (a unit vector,
    ``block_yaw``): mean squared error of its components over the samples whose target is
    not NaN; ``binary``: binary cross-entropy;
    ``class``: cross-entropy over the phase index. A ``camera_map/<name>`` map (training's
    ``camera_map``): :func:`map_loss` against ``targets["<name>_px"]``, the target's image
    position (:class:`~mmrobot.train.batches.BatchMaker`); the model gives a flat map (a
    constant loss, no gradient) where the camera is invalid.
    """
    out = {}
    weight = None
    if camera_far_m > 0:
        dist = torch.linalg.vector_norm(targets["block_rel"][:, :2].float(), dim=1)
        weight = torch.where(dist >= camera_far_m, 1.0, camera_near_weight)
    for name, pred in predictions.items():
        if name.startswith("camera_map/"):
            points = targets[name.removeprefix("camera_map/") + "_px"]
            out[name] = map_loss(pred, points, torch.ones_like(points[:, 0], dtype=torch.bool))
            continue
        target_name = name.removeprefix("camera/")
        kind = AUX_TARGETS[target_name][0]
        target = targets[target_name]
        camera = name != target_name
        if camera and kind == "vector":  # a camera head: the same position in the base frame
            target = target + targets["tcp"]
        pred = pred.float()
        if kind == "vector":
            err = (pred - 100.0 * target.float().reshape(pred.shape)) ** 2
            if camera and weight is not None:
                out[name] = (err.mean(1) * weight).sum() / weight.sum().clamp(min=1e-6)
            else:
                out[name] = err.mean()
        elif kind == "angle":  # a NaN target (a push sample, data.NO_FACE_TURN): left out
            target = target.float().reshape(pred.shape)
            known = ~torch.isnan(target)
            err = torch.where(known, pred - target.nan_to_num(), 0.0) ** 2
            out[name] = err.sum() / known.sum().clamp(min=1)
        elif kind == "binary":
            out[name] = nn.functional.binary_cross_entropy_with_logits(
                pred, target.float().reshape(pred.shape)
            )
        else:
            out[name] = nn.functional.cross_entropy(pred, target.long().reshape(-1))
    return out


def map_targets(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2) image points as fractions ``(u / W, v / H)`` of the image (pixel edges: 0 is
    the left or top edge, 1 the right or bottom) -> (B, height, width) target distributions
    over a ``height`` x ``width`` map of the image: bilinear weights on the four cells whose
    centres surround the point (clamped to the outer cells' centres), so the expected cell
    position of the target is the point itself. A row with a NaN point is all zeros."""
    known = torch.isfinite(points).all(dim=1)
    points = torch.where(known[:, None], points.to(torch.float32), 0.5)
    b = points.shape[0]

    def lower_cell(frac: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre = (frac * n - 0.5).clamp(0, n - 1)  # in cell units: cell k's centre is at k
        lo = centre.floor().clamp(max=max(n - 2, 0))
        return lo.long(), centre - lo

    x0, fx = lower_cell(points[:, 0], width)
    y0, fy = lower_cell(points[:, 1], height)
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    out = torch.zeros(b, height, width)
    rows = torch.arange(b)
    for yy, xx, wt in (
        (y0, x0, (1 - fx) * (1 - fy)),
        (y0, x1, fx * (1 - fy)),
        (y1, x0, (1 - fx) * fy),
        (y1, x1, fx * fy),
    ):
        out.index_put_((rows, yy, xx), wt * known, accumulate=True)
    return out


def map_loss(logits: torch.Tensor, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a spatial softmax against a point (``training.camera_map``).

    Args:
        logits: (B, h, w) map logits (:meth:`ImageEncoder.forward` with ``maps``).
        points: (B, 2) the target's image position as fractions ``(u / W, v / H)``; NaN
            where it is not known (behind the camera).
        valid: (B,) bool, the rows to train (the camera's image valid).

    Returns:
        The mean over the valid rows with a known point of ``-sum(target * log_softmax)``
        (:func:`map_targets`); 0 if there are none.
    """
    b, h, w = logits.shape
    target = map_targets(points.detach().cpu(), h, w).to(logits.device)
    used = valid & torch.isfinite(points).all(dim=1)
    logp = torch.log_softmax(logits.float().reshape(b, -1), dim=-1)
    per_row = -(target.reshape(b, -1) * logp).sum(-1)
    return (per_row * used).sum() / used.sum().clamp(min=1)


#: A target token that is not trained on (a chunk position past an excursion).
IGNORE_TOKEN = -100


def token_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_sigma: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over action tokens and token accuracy, both over the targets that
    are not :data:`IGNORE_TOKEN`.

    With ``label_sigma`` > 0 the target of each token is not one bin but a Gaussian over the
    bins centred on it, ``label_sigma`` bins wide, renormalized where the range ends (the
    histogram loss of Imani and White 2018, "HL-Gauss" in Farebrother et al. 2024): the
    bins' order then counts, and a prediction one bin off is nearly right. The loss then
    includes the targets' own entropy, so its value is not comparable with one-hot runs.

    Args:
        logits: (B, H, D, bins); targets: (B, H, D) int64.
        label_sigma: the Gaussian's standard deviation in bins (0: one-hot targets).
    """
    logits = logits.float()  # the loss in fp32 also under bf16 autocast
    flat = targets.reshape(-1)
    used = flat != IGNORE_TOKEN
    lf = logits.reshape(-1, logits.shape[-1])
    if label_sigma > 0:
        bins = torch.arange(lf.shape[-1], device=lf.device, dtype=lf.dtype)
        centre = flat.clamp(min=0).to(lf.dtype)[:, None]
        soft = torch.exp(-0.5 * ((bins - centre) / label_sigma) ** 2)
        soft = soft / soft.sum(-1, keepdim=True)
        per_token = -(soft * torch.log_softmax(lf, dim=-1)).sum(-1)
        loss = (per_token * used).sum() / used.sum().clamp(min=1)
    else:
        loss = nn.functional.cross_entropy(lf, flat, ignore_index=IGNORE_TOKEN)
    hits = (logits.argmax(-1).reshape(-1) == flat) & used
    return loss, hits.float().sum() / used.sum().clamp(min=1)


def training_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    aux_pred: dict[str, torch.Tensor],
    aux_targets: dict[str, torch.Tensor],
    aux_weights: dict[str, float],
    stage: str = "policy",
    label_sigma: float = 0.0,
    camera_far_m: float = 0.0,
    camera_near_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, token loss, token accuracy, auxiliary losses) of one training step.

    The total is the token loss plus each auxiliary loss times its weight in ``aux_weights``
    (``TrainingConfig.loss_weights``: a head's prediction name -> weight) at ``stage``
    ``"policy"``; at ``"camera"`` (the trainer's ``perception_steps``) it is the camera heads'
    and camera maps' weighted losses alone, and at ``"turn"`` (the trainer's ``turn_steps``) the camera turn
    head's alone. ``camera_far_m`` and ``camera_near_weight``: see :func:`aux_loss`.
    """
    if stage not in STAGES:
        raise ValueError(f"training_loss stage {stage!r}: use one of {', '.join(STAGES)}")
    loss, acc = token_loss(logits, targets, label_sigma)
    aux = aux_loss(aux_pred, aux_targets, camera_far_m, camera_near_weight)
    weighted = {n: aux_weights[n] * v for n, v in aux.items()}
    if stage == "turn":
        total = weighted["camera/block_yaw"]
    elif stage == "camera":
        total = sum(v for n, v in weighted.items() if n.startswith(("camera/", "camera_map/")))
    else:
        total = loss + sum(weighted.values())
    return total, loss, acc, aux


def set_camera_offsets(model: nn.Module, aux: dict[str, np.ndarray]) -> None:
    """Set each camera position head's output offset to its mean base-frame target (cm) over
    ``aux``, the training samples' privileged targets (with ``tcp``)."""
    for name in model.camera_position_heads:
        mean_cm = 100.0 * (aux[name] + aux["tcp"]).mean(axis=0)
        getattr(model, f"camera_aux_offset_{name}").copy_(torch.from_numpy(mean_cm))
