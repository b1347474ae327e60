"""`genint-fast train | eval`: the GenInt trainer and top-1/top-5 evaluation.

    genint-fast train --config configs/demo.yaml [key=value ...] [--resume]
    genint-fast eval --checkpoint runs/demo/checkpoint.pt [--split test-ood]
"""
from __future__ import annotations

import json
import os
import sys

SPLITS = ("train", "test-id", "test-ood")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (erm, mixup, gan-aug, genint) from a "
                                     "YAML recipe")
    p.add_argument("--config", metavar="YAML", default=None,
                   help="recipe in configs/ (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override recipe keys, e.g. steps=500 lambda1=0.1 device=cuda")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (exactly where it stopped)")
    p.set_defaults(func=train_main)

    p = sub.add_parser("eval", help="top-1/top-5 of a trained checkpoint on a built-in split")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--split", choices=SPLITS, default="test-ood",
                   help="biased-digits split (default test-ood: rho = 0)")
    p.add_argument("--data", default=None,
                   help="digits:<variant>[:rho] (default: the data of the checkpoint's config)")
    p.add_argument("--n", type=int, default=None, help="images in the split (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=eval_main)


def _dist_env():
    """(rank, world) from torchrun's environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def train_main(args) -> int:
    from .train import Trainer, evaluate, load_config, load_digits_split

    cfg = load_config(args.config, args.overrides)   # every check before any work
    rank, world = _dist_env()
    if world > 1:
        raise RuntimeError("multi-process (torchrun) training is not implemented yet")
    trainer = Trainer(cfg, rank=rank, world=world)
    if trainer.checkpoint_path.exists() and not args.resume:
        raise ValueError(f"{trainer.checkpoint_path} exists; pass --resume to continue it or "
                         f"choose another out=")
    if args.resume and trainer.resume():
        print(f"resumed from {trainer.checkpoint_path} at step {trainer.step}", file=sys.stderr)
    row = trainer.fit()
    summary = {"steps": trainer.step, "final": row}
    for split in ("test-id", "test-ood"):
        images, labels = load_digits_split(cfg, split, cfg.eval_size)
        top1, top5 = evaluate(trainer.model, images, labels, device=trainer.device)
        summary[split] = {"top1": top1, "top5": top5}
    print(json.dumps(summary))
    return 0


def eval_main(args) -> int:
    import torch

    from .train import TrainConfig, build_model, evaluate, load_checkpoint, load_digits_split

    st = load_checkpoint(args.checkpoint)
    cfg = TrainConfig(**st["config"])
    if args.data is not None:
        cfg.data = args.data
    cfg.validate()
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model = build_model(cfg.model, cfg.num_classes)
    model.load_state_dict(st["model"])
    device = torch.device(args.device)
    model.to(device)
    images, labels = load_digits_split(cfg, args.split, args.n)
    top1, top5 = evaluate(model, images, labels, batch_size=args.batch_size, device=device)
    print(json.dumps({"checkpoint": str(args.checkpoint), "step": st["step"],
                      "data": cfg.data, "split": args.split, "n": int(labels.shape[0]),
                      "top1": top1, "top5": top5}))
    return 0
