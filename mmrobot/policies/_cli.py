"""``mmrobot policy ...`` subcommands: inspect a config or checkpoint, create an untrained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("policy", help="fusion policy configs and checkpoints")
    sub = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="summarize a policy config (.toml) or checkpoint folder")
    info.add_argument("path", type=Path, help="policies/default.toml or a checkpoint folder")
    info.set_defaults(func=_info)
    init = sub.add_parser(
        "init", help="write an untrained checkpoint from a config (for tests, export)"
    )
    init.add_argument("--config", type=Path, default=Path("policies/default.toml"))
    init.add_argument("--out", type=Path, required=True, help="checkpoint folder to create")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(func=_init)
    lex = sub.add_parser(
        "lexicon",
        help="add a WordNet lexicon to a checkpoint: unseen words are read as training words",
        description="Read the training instructions of DATASET, map every WordNet lemma that "
        "means one of their words (synonyms, narrower words, one hyponym level; never "
        "siblings or antonyms) to it, and store the table in CHECKPOINT's config.json. The "
        "torch and ONNX policies then rewrite each instruction into training words before "
        "tokenizing it (see docs/policy.md). Needs WordNet 3.0's database files "
        "(Debian/Ubuntu: apt-get install wordnet-base) to build, not to run.",
    )
    lex.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json is rewritten)")
    lex.add_argument("--dataset", type=Path, required=True, help="the training demos (.h5)")
    lex.add_argument("--wordnet", type=Path, default=None, help="WordNet dict folder")
    lex.add_argument("--senses", type=int, default=2, help="senses per part of speech used")
    lex.add_argument("--max-cost", type=int, default=2, help="longest WordNet path kept")
    lex.add_argument("--remove", action="store_true", help="remove the lexicon instead")
    lex.set_defaults(func=_lexicon)


def _load_config(path: Path):  # noqa: ANN202 - returns PolicyConfig
    from mmrobot.policies.config import load_policy_config

    if path.is_dir():
        from mmrobot.policies.checkpoint import read_checkpoint_config

        return read_checkpoint_config(path)[0]
    return load_policy_config(path)


def _info(args: argparse.Namespace) -> int:
    from mmrobot.policies.model import FusionPolicyModel

    cfg = _load_config(args.path)
    model = FusionPolicyModel(cfg)
    m = cfg.model
    print(f"policy {args.path}")
    print(
        f"  fusion {m.fusion}, decoding {m.decoding}, width {m.width}, depth {m.depth}, heads {m.heads}"
    )
    print(
        f"  parameters {model.num_parameters():,} "
        f"({model.num_parameters(deployed=True):,} deployed, without training-only heads)"
    )
    n_text = model.instruction_encoder.n_tokens
    print(
        f"  token budget per decision: {model.n_obs_tokens + model.n_actions * model.n_branches} = "
        f"{n_text} instruction + {model.n_obs_tokens - n_text} observation + "
        f"{model.n_actions * model.n_branches} action"
    )
    print(
        f"  instruction: {cfg.language.max_len} bytes -> {n_text} tokens "
        f"(byte convolution, stride {cfg.language.stride})"
    )
    a = cfg.action
    print(
        f"  action: {a.horizon} steps x {a.dim} dims, {a.bins} {a.binning} bins, period {a.period_ns} ns"
    )
    for s, n in zip(model.streams, model.stream_tokens):
        norm = "normalized" if s.name in cfg.normalization else ""
        print(f"  stream {s.name:<12} {s.modality:<8} {str(s.obs_shape):<16} {n:>3} tokens {norm}")
    return 0


def _init(args: argparse.Namespace) -> int:
    import torch

    from mmrobot.policies.checkpoint import save_checkpoint
    from mmrobot.policies.model import FusionPolicyModel

    cfg = _load_config(args.config)
    torch.manual_seed(args.seed)
    model = FusionPolicyModel(cfg)
    save_checkpoint(model, args.out, metadata={"trained": False, "seed": args.seed})
    print(f"wrote untrained checkpoint {args.out} ({model.num_parameters():,} parameters)")
    return 0


def _lexicon(args: argparse.Namespace) -> int:
    from mmrobot.policies.wordnet import add_lexicon, remove_lexicon

    if args.remove:
        remove_lexicon(args.checkpoint)
        print(f"removed the lexicon of {args.checkpoint}")
        return 0
    info = add_lexicon(args.checkpoint, args.dataset, args.wordnet, args.senses, args.max_cost)
    print(
        f"{args.checkpoint}: lexicon of {info['entries']} WordNet words onto the "
        f"{info['vocabulary']} training words of {info['episodes']} episodes"
        + (f" ({info['skipped']} with held-out phrasings not read)" if info["skipped"] else "")
    )
    return 0
