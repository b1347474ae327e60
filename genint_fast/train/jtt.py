"""Just Train Twice (Liu et al., ICML 2021): no group labels, two runs.

1. Identification: an ERM run of `jtt_id_epochs` epochs (the same model, optimiser and seed) on
   the training images; its misclassified training images form the error set E (predictions on
   the un-augmented images, in eval mode).
2. The final run trains on the training set with every image of E drawn `jtt_upweight` times
   (upsampling, as the paper's code does), everything else once.

The identification run lives in OUT/jtt_identification (its own checkpoint, so a resumed JTT
run reuses it instead of training it again). Defaults follow the paper's CelebA setting
(T = 1 epoch, lambda_up = 50); Waterbirds used T = 60 epochs and lambda_up = 100.
"""
from __future__ import annotations

import dataclasses

import torch

__all__ = ["upsample_indices", "identify_errors"]


def upsample_indices(errors: torch.Tensor, upweight: int) -> torch.Tensor:
    """Indices of the upsampled training set: 0..N-1 once, then every error index a further
    upweight - 1 times."""
    errors = torch.as_tensor(errors, dtype=torch.bool)
    if int(upweight) < 1:
        raise ValueError(f"jtt_upweight must be >= 1, got {upweight}")
    extra = torch.nonzero(errors).flatten().repeat(int(upweight) - 1)
    return torch.cat([torch.arange(errors.numel()), extra])


def identify_errors(cfg, images, labels, out, *, log=print) -> torch.Tensor:
    """Stage 1: train (or resume) the ERM identification run, return the boolean error mask
    over the training images."""
    from .trainer import Trainer, logits_of

    id_cfg = dataclasses.replace(cfg, mode="erm", epochs=cfg.jtt_id_epochs, steps=1,
                                 out=str(out), select="last", progress=False)
    ident = Trainer(id_cfg, data=(images, labels), log=log)
    if ident.resume():
        log(f"JTT identification run: resumed from {ident.checkpoint_path} at step {ident.step}")
    ident.fit()
    pred = torch.cat([lg.argmax(1).cpu() for _, lg in
                      logits_of(ident.model, images, device=ident.device,
                                normalize=ident.normalise)])
    errors = pred != labels.cpu()
    log(f"JTT: the identification run ({ident.step} steps) misclassifies {int(errors.sum())} of "
        f"{errors.numel()} training images; each is drawn {cfg.jtt_upweight} times")
    return errors
