"""Episode videos: frames from ``env.render()`` with the instruction written on them.

With an attribution (``mmrobot eval --explain``, ``mmrobot run --explain``) a panel beside
each frame shows every camera's image with its attention map blended over it and a bar per
input group (:func:`attribution_panel`).

MP4 files are written with OpenCV's ``cv2.VideoWriter`` (``mp4v`` codec, readable by
``cv2.VideoCapture`` and most players); GIF files with Pillow. The format follows the file
suffix (``.mp4`` or ``.gif``). cv2 and Pillow are imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Attribution

__all__ = [
    "VIDEO_FORMATS",
    "VideoRecorder",
    "annotate_frame",
    "attribution_panel",
    "heatmap_overlay",
    "write_video",
]

#: File suffixes :func:`write_video` understands.
VIDEO_FORMATS = ("mp4", "gif")

_FONT_SCALE = 0.4
_THICKNESS = 1
_MARGIN_PX = 4


def _cv2() -> Any:
    return require("cv2", "writing evaluation videos (pip install opencv-python-headless)")


def _wrap(cv2: Any, text: str, width_px: int) -> list[str]:
    """Greedy word wrap of ``text`` so that each line fits in ``width_px`` pixels."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        (w, _), _ = cv2.getTextSize(trial, font, _FONT_SCALE, _THICKNESS)
        if w <= width_px or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def annotate_frame(
    frame: np.ndarray,
    top: str,
    bottom: str = "",
    bottom_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Write text on a copy of an RGB frame with ``cv2.putText``.

    Args:
        frame: (H, W, 3) uint8 RGB image.
        top: text for a dark band at the top (the instruction), wrapped to the frame width.
        bottom: one short line for a band at the bottom (split, task, step, outcome).
        bottom_color: RGB colour of the bottom line.

    Returns:
        (H, W, 3) uint8 RGB image with the text.
    """
    cv2 = _cv2()
    img = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got shape {frame.shape}")
    h, w = img.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, line_h), base = cv2.getTextSize("Ag", font, _FONT_SCALE, _THICKNESS)
    step_px = line_h + base + 2
    lines = _wrap(cv2, top, w - 2 * _MARGIN_PX)[: max(1, (h // 3) // step_px)]
    if lines:
        band = min(h, len(lines) * step_px + 2 * _MARGIN_PX)
        img[:band] = (img[:band].astype(np.uint16) * 2 // 5).astype(np.uint8)
        for i, line in enumerate(lines):
            y = _MARGIN_PX + (i + 1) * step_px - base - 1
            cv2.putText(
                img, line, (_MARGIN_PX, y), font, _FONT_SCALE, (255, 255, 255), _THICKNESS,
                cv2.LINE_AA,
            )  # fmt: skip
    if bottom:
        band = step_px + 2 * _MARGIN_PX
        img[h - band :] = (img[h - band :].astype(np.uint16) * 2 // 5).astype(np.uint8)
        cv2.putText(
            img, bottom, (_MARGIN_PX, h - _MARGIN_PX - base), font, _FONT_SCALE,
            tuple(int(c) for c in bottom_color), _THICKNESS, cv2.LINE_AA,
        )  # fmt: skip
    return img


def _rgb_image(image: np.ndarray) -> np.ndarray:
    """A camera observation as (H, W, 3) uint8 RGB: the newest frame of a history, grey for
    one channel, a float image (depth) scaled to its range."""
    img = np.asarray(image)
    if img.ndim == 4:
        img = img[-1]
    if img.ndim == 2:
        img = img[..., None]
    if img.dtype != np.uint8:
        f = np.nan_to_num(img.astype(np.float32))
        lo, hi = float(f.min()), float(f.max())
        img = ((f - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def heatmap_overlay(
    image: np.ndarray, grid_map: np.ndarray, alpha: float = 0.6, full_ratio: float = 4.0
) -> np.ndarray:
    """Blend a (grid, grid) attention map over an image, each token over its patch.

    What is drawn is where within the camera the attention went (the bar shows how much):
    each patch's share relative to an even spread over the camera's patches. A patch at or
    below its even share keeps the image; above it, it is tinted (OpenCV's JET, blue to red)
    in proportion to the excess, fully red at ``full_ratio`` times its even share. A map that
    is nearly even (as attention rollout often gives) therefore shows almost no tint.

    Args:
        image: a camera observation (see :func:`_rgb_image` for what is accepted).
        grid_map: (grid, grid) non-negative, row 0 at the top of the image.
        alpha: blend weight of a fully tinted patch.
        full_ratio: share / even share at which the tint is full (> 1).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    cv2 = _cv2()
    img = _rgb_image(image)
    h, w = img.shape[:2]
    m = np.asarray(grid_map, dtype=np.float32)
    mean = float(m.mean())
    ratio = m / mean if mean > 0 else np.zeros_like(m)
    excess = np.clip((ratio - 1.0) / (full_ratio - 1.0), 0.0, 1.0).astype(np.float32)
    up = cv2.resize(excess, (w, h), interpolation=cv2.INTER_NEAREST)
    color = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    wt = (alpha * up)[..., None]
    return (img * (1 - wt) + color * wt).astype(np.uint8)


def attribution_panel(
    height: int,
    attribution: Attribution | None,
    images: dict[str, np.ndarray] | None = None,
    width: int = 200,
) -> np.ndarray:
    """A (height, width, 3) panel: camera heatmaps on top, a bar per input group below.

    Args:
        height: the frame's height.
        attribution: the decision to show (None: an empty panel, for frames before the first
            decision, so that every frame of a video has one size).
        images: camera stream -> its observation; a camera without one (masked) is grey.
        width: panel width in pixels.
    """
    cv2 = _cv2()
    panel = np.full((height, width, 3), 24, dtype=np.uint8)
    if attribution is None:
        return panel
    font = cv2.FONT_HERSHEY_SIMPLEX
    groups = list(attribution.shares)
    row_px = 14
    bars_px = len(groups) * row_px + 2 * _MARGIN_PX
    cams = list(attribution.camera_maps)
    if cams:
        side = min((width - _MARGIN_PX * (len(cams) + 1)) // len(cams), height - bars_px - 16)
        for i, cam in enumerate(cams):
            if side < 8:
                break
            x0 = _MARGIN_PX + i * (side + _MARGIN_PX)
            src = (images or {}).get(cam)
            if src is None:
                tile = np.full((side, side, 3), 70, dtype=np.uint8)
            else:
                over = heatmap_overlay(src, attribution.camera_maps[cam])
                tile = cv2.resize(over, (side, side), interpolation=cv2.INTER_AREA)
            panel[_MARGIN_PX : _MARGIN_PX + side, x0 : x0 + side] = tile
            cv2.putText(
                panel, cam[:12], (x0, _MARGIN_PX + side + 11), font, 0.33, (220, 220, 220), 1,
                cv2.LINE_AA,
            )  # fmt: skip
    label_px, y0 = 70, height - bars_px + _MARGIN_PX
    for i, g in enumerate(groups):
        y = y0 + i * row_px
        share = float(attribution.shares[g])
        cv2.putText(
            panel, g[:11], (_MARGIN_PX, y + 10), font, 0.33, (220, 220, 220), 1, cv2.LINE_AA
        )
        bar = int(round(share * (width - label_px - 32)))
        cv2.rectangle(panel, (label_px, y + 2), (label_px + bar, y + 11), (90, 170, 250), -1)
        cv2.putText(
            panel, f"{100 * share:.0f}%", (label_px + bar + 3, y + 10), font, 0.3,
            (220, 220, 220), 1, cv2.LINE_AA,
        )  # fmt: skip
    return panel


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 20.0) -> Path:
    """Write RGB frames to an MP4 (``mp4v``) or GIF file, chosen by the path's suffix.

    Args:
        path: output file ending in ``.mp4`` or ``.gif``; parent folders are created.
        frames: N >= 1 frames, each (H, W, 3) uint8 RGB, all of one size.
        fps: frames per second (the env's control rate gives real time).

    Returns:
        The path written.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise ConfigError(
            f"video file {str(path)!r}: unknown format {path.suffix!r}; use .mp4 or .gif"
        )
    if len(frames) == 0:
        raise ValueError(f"no frames to write to {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    shape = np.shape(frames[0])
    for i, f in enumerate(frames):
        if np.shape(f) != shape or len(shape) != 3 or shape[2] != 3:
            raise ValueError(
                f"frame {i} has shape {np.shape(f)}; every frame must be (H, W, 3) like frame 0 "
                f"{shape}"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "mp4":
        cv2 = _cv2()
        h, w = shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise OSError(
                f"OpenCV could not open {str(path)!r} for writing with the mp4v codec; "
                "write a .gif instead (--video-format gif)"
            )
        try:
            for f in frames:
                writer.write(cv2.cvtColor(np.asarray(f, dtype=np.uint8), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        image = require("PIL.Image", "writing GIF videos (pip install pillow)")
        imgs = [image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        imgs[0].save(
            path,
            save_all=True,
            append_images=imgs[1:],
            duration=max(1, round(1000.0 / fps)),
            loop=0,
        )
    return path


class VideoRecorder:
    """Collects annotated frames of one episode and writes them at the end.

    Args:
        instruction: written at the top of every frame.
        label: prefix of the bottom line (e.g. ``"train | pick"``).
        fps: playback rate of the file.
        explain: put an :func:`attribution_panel` beside every frame.
    """

    def __init__(
        self, instruction: str, label: str = "", fps: float = 20.0, explain: bool = False
    ) -> None:
        self.instruction = instruction
        self.label = label
        self.fps = fps
        self.explain = explain
        self.frames: list[np.ndarray] = []

    def add(
        self,
        frame: np.ndarray | None,
        step: int,
        status: str = "",
        attribution: Attribution | None = None,
        images: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Annotate and keep one (H, W, 3) uint8 frame (None frames are skipped).

        With ``explain``, the latest decision's ``attribution`` and the camera ``images`` it
        was made from are drawn beside the frame.
        """
        if frame is None:
            return
        text = " | ".join(p for p in (self.label, f"step {step}", status) if p)
        color = (90, 230, 90) if status == "success" else (255, 255, 255)
        if status and status != "success":
            color = (255, 120, 100)
        img = annotate_frame(frame, self.instruction, text, color)
        if self.explain:
            img = np.concatenate([img, attribution_panel(img.shape[0], attribution, images)], 1)
        self.frames.append(img)

    def save(self, path: str | Path) -> Path:
        """Write the frames (see :func:`write_video`)."""
        return write_video(path, self.frames, self.fps)
