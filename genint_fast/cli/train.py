"""`genint-fast train`: the GenInt trainer (evaluation of its checkpoints: cli/eval.py).

    genint-fast train --config configs/digits_genint.yaml [key=value ...] [--resume]
    torchrun --nproc_per_node 2 -m genint_fast.cli train --config configs/digits_genint.yaml

`genint-fast train --help` lists every config key with its default and meaning, built from the
TrainConfig fields when the help is asked for (so `genint-fast --help` imports nothing heavy).
"""
from __future__ import annotations

import argparse
import json
import sys


class _HelpWithConfigKeys(argparse.Action):
    """-h/--help that appends the config keys (genint_fast.train.config.config_help) to the
    train command's help, importing the config module only when the help is printed."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..train.config import config_help

        parser.epilog = config_help()
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        parser.exit()


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (erm, mixup, autoaugment, stylized, "
                                     "gan-aug, genint, genint-transfer, cgn, real+cgn) from a YAML "
                                     "recipe", add_help=False,
                       description="Train a classifier from a YAML recipe (configs/*.yaml) and "
                                   "key=value overrides; the config keys are listed below.")
    p.add_argument("-h", "--help", action=_HelpWithConfigKeys,
                   help="show this help, with every config key, and exit")
    p.add_argument("--config", metavar="YAML", default=None,
                   help="recipe in configs/ (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override recipe keys, e.g. steps=500 lambda1=0.1 device=cuda")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (exactly where it stopped)")
    p.set_defaults(func=train_main)


def train_main(args) -> int:
    from ..train import evaluate, load_config, load_digits_split, run_training

    cfg = load_config(args.config, args.overrides)   # every check before any work
    try:
        trainer, row = run_training(cfg, resume=args.resume,
                                    log=lambda msg: print(msg, file=sys.stderr))
        if trainer.rank == 0:
            summary = {"steps": trainer.step, "world_size": trainer.world, "final": row}
            splits = () if cfg.data.startswith("folder:") else ("test-id", "test-ood")
            for split in splits:
                images, labels = load_digits_split(cfg, split, cfg.eval_size)
                top1, top5 = evaluate(trainer.model, images, labels, device=trainer.device,
                                      normalize=trainer.normalise)
                summary[split] = {"top1": top1, "top5": top5}
            print(json.dumps(summary))
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0
