"""`genint-fast train | eval`: the GenInt trainer and top-1/top-5 evaluation.

    genint-fast train --config configs/demo.yaml [key=value ...] [--resume]
    torchrun --nproc_per_node 2 -m genint_fast.cli train --config configs/demo.yaml
    genint-fast eval --checkpoint runs/demo/checkpoint.pt [--split test-ood]
"""
from __future__ import annotations

import json
import sys

SPLITS = ("train", "test-id", "test-ood")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (erm, mixup, autoaugment, stylized, "
                                     "gan-aug, genint, genint-transfer, cgn, real+cgn) from a YAML "
                                     "recipe")
    p.add_argument("--config", metavar="YAML", default=None,
                   help="recipe in configs/ (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override recipe keys, e.g. steps=500 lambda1=0.1 device=cuda")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (exactly where it stopped)")
    p.set_defaults(func=train_main)

    p = sub.add_parser("eval", help="top-1/top-5 of a trained checkpoint on a built-in split "
                                    "or an image folder")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--split", choices=SPLITS, default="test-ood",
                   help="biased-digits split (default test-ood: rho = 0)")
    p.add_argument("--data", default=None,
                   help="digits:<variant>[:rho] (default: the data of the checkpoint's config)")
    p.add_argument("--n", type=int, default=None, help="images in the split (default: all)")
    p.add_argument("--folder", default=None, metavar="DIR",
                   help="evaluate on an image-folder tree (DIR/<class>/<image>) instead")
    p.add_argument("--size", type=int, default=32, help="image size for --folder (default 32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=eval_main)


def train_main(args) -> int:
    from .train import evaluate, load_config, load_digits_split, run_training

    cfg = load_config(args.config, args.overrides)   # every check before any work
    try:
        trainer, row = run_training(cfg, resume=args.resume,
                                    log=lambda msg: print(msg, file=sys.stderr))
        if trainer.rank == 0:
            summary = {"steps": trainer.step, "world_size": trainer.world, "final": row}
            splits = () if cfg.data.startswith("folder:") else ("test-id", "test-ood")
            for split in splits:
                images, labels = load_digits_split(cfg, split, cfg.eval_size)
                top1, top5 = evaluate(trainer.model, images, labels, device=trainer.device)
                summary[split] = {"top1": top1, "top5": top5}
            print(json.dumps(summary))
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def eval_main(args) -> int:
    import torch

    from .train import (TrainConfig, build_model, evaluate, evaluate_folder, load_checkpoint,
                        load_digits_split)

    st = load_checkpoint(args.checkpoint)
    cfg = TrainConfig(**st["config"])
    if args.data is not None:
        cfg.data = args.data
    cfg.validate()
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model = build_model(cfg.model, cfg.num_classes, cfg.heads)
    model.load_state_dict(st["model"])
    device = torch.device(args.device)
    model.to(device)
    if args.folder is not None:
        top1, top5, n = evaluate_folder(model, args.folder, num_classes=cfg.num_classes,
                                        size=args.size, batch_size=args.batch_size,
                                        device=device)
        print(json.dumps({"checkpoint": str(args.checkpoint), "step": st["step"],
                          "folder": str(args.folder), "n": n, "top1": top1, "top5": top5}))
        return 0
    images, labels = load_digits_split(cfg, args.split, args.n)
    top1, top5 = evaluate(model, images, labels, batch_size=args.batch_size, device=device)
    print(json.dumps({"checkpoint": str(args.checkpoint), "step": st["step"],
                      "data": cfg.data, "split": args.split, "n": int(labels.shape[0]),
                      "top1": top1, "top5": top5}))
    return 0
