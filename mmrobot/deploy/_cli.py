"""``mmrobot export``: a policy checkpoint -> one ONNX file + JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a policy checkpoint to ONNX (policy.onnx + policy.json)"
    )
    p.add_argument(
        "checkpoint", type=Path, help="checkpoint folder (model.safetensors + config.json)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--quantize", choices=("int8", "fp16"), default=None, help="post-export precision"
    )
    p.add_argument("--opset", type=int, default=18)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from mmrobot.deploy.export import export_onnx

    sidecar = export_onnx(args.checkpoint, args.out, quantize=args.quantize, opset=args.opset)
    a = sidecar.config.action
    print(
        f"wrote {args.out / sidecar.model_file} ({sidecar.model_bytes / 1e6:.2f} MB, {sidecar.precision}, "
        f"opset {sidecar.opset}) and {args.out / 'policy.json'}"
    )
    print(f"  inputs: {', '.join(sidecar.input_names)}")
    print(
        f"  outputs: action_logits (B, {a.horizon}, {a.dim}, {a.bins}), action_tokens (B, {a.horizon}, {a.dim})"
    )
    return 0
