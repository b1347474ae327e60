"""CGN, counterfactual generative networks (SPEC section 9, ../shared/CGN.md).

- `small`: the 32x32 mechanisms (shape mask, texture, background), shuffler, discriminators;
- `train`: their training (`genint-fast cgn`), checkpoints and exact resume;
- `sampler`: the counterfactual sampler (the intervention sampler's iterator interface), the
  counterfactual sheet, mask statistics and the failed-decomposition warnings;
- `presets`: named settings (default: fastest on a CPU; reference: the authors' small CGN);
- `reference`: the authors' released MNIST checkpoints converted (`genint-fast cgn import`);
- `large`: the large-image CGN over BigGAN-deep with a user-provided U^2-Net (imported on
  demand: it needs pytorch-pretrained-biggan).
"""
from .sampler import (CounterfactualRecord, CounterfactualSampler, counterfactual_sheet,
                      decomposition_warnings, mask_statistics)
from .small import (CGNConfig, CGNOutput, ConvDiscriminator, MLPDiscriminator, SmallCGN,
                    build_discriminator, composite, shuffle_texture)
from .train import (CGNTrainConfig, load_cgn, mask_entropy, read_cgn_checkpoint, train_cgn,
                    train_cgn_checked)

__all__ = ["CGNConfig", "CGNOutput", "SmallCGN", "MLPDiscriminator", "ConvDiscriminator",
           "build_discriminator", "composite", "shuffle_texture", "CGNTrainConfig", "train_cgn",
           "train_cgn_checked",
           "load_cgn", "read_cgn_checkpoint", "mask_entropy", "CounterfactualRecord",
           "CounterfactualSampler", "counterfactual_sheet", "mask_statistics",
           "decomposition_warnings"]
