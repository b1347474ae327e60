"""The one conditional-generator interface every part of genint_fast uses (SPEC section 2).

A ConditionalGenerator maps (z, class ids, truncation) to images in [-1, 1]. It names one layer
(`direction_layer`, a dotted sub-module name) whose output GANSpace direction discovery records,
and, where that layer is affine in z for a fixed class, exposes the z-block of its weight
(`linear_z_map`) so that one SVD can replace the sampled PCA.
"""
from __future__ import annotations


import torch
from torch import nn

from ..generator_spec import check_truncation  # torch-free (configs read it); re-exported here

__all__ = ["ConditionalGenerator", "truncated_latents", "layer_fingerprint", "check_truncation"]


def truncated_latents(n, dim, truncation=1.0, *, generator=None, device=None,
                      dtype=torch.float32):
    """z = t * TruncNormal(-2, 2): BigGAN's latent noise, drawn with torch's library sampler
    (torch.nn.init.trunc_normal_) on the target device; `generator` makes it reproducible."""
    t = check_truncation(truncation)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    z = torch.empty(int(n), int(dim), device=device, dtype=torch.float32)
    torch.nn.init.trunc_normal_(z, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
    return (z * t).to(dtype)


class _StopForward(Exception):
    pass


def layer_fingerprint(module: nn.Module) -> list:
    """A dtype- and device-independent summary of a layer's weights: [name, shape, L2 norm, sum]
    per floating-point tensor. Two generators match when these agree to 1%."""
    out = []
    for name, t in sorted(module.state_dict().items()):
        if not torch.is_floating_point(t):
            continue
        d = t.detach().to("cpu", torch.float64)
        out.append([name, list(d.shape), float(d.norm()), float(d.sum())])
    return out


class ConditionalGenerator(nn.Module):
    """Interface: images in [-1, 1] from (z, class ids, truncation).

    Subclasses set `latent_dim`, `num_classes`, `image_size`, `direction_layer` (dotted name of
    the sub-module whose output direction discovery records) and `generator_id` (what a
    directions file is tied to), and implement `forward(z, y, truncation)` with y int64 class
    ids of shape (B,). `linear_z_map()` returns the (H, latent_dim) matrix W with
    layer(z, y) = W z + c(y) when the layer is affine in z, else None.
    """

    latent_dim: int
    num_classes: int
    image_size: int
    direction_layer: str
    generator_id: str

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def sample_latents(self, n, truncation=1.0, *, generator=None, device=None):
        return truncated_latents(n, self.latent_dim, truncation, generator=generator,
                                 device=device or self.device)

    def check_labels(self, y, batch) -> torch.Tensor:
        y = torch.as_tensor(y, device=self.device)
        if y.dtype not in (torch.int64, torch.int32) or y.dim() != 1 or y.shape[0] != batch:
            raise ValueError(f"class ids must be an int64 tensor of shape ({batch},), "
                             f"got {tuple(y.shape)} {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"class ids must be in [0, {self.num_classes}), got "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y.long()

    def check_latents(self, z) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {shape}")
        return z.to(device=self.device, dtype=self.dtype)

    def layer_module(self) -> nn.Module:
        return self.get_submodule(self.direction_layer)

    @torch.no_grad()
    def layer_activations(self, z, y, truncation=1.0) -> torch.Tensor:
        """The direction layer's output for (z, y), flattened to (B, H). The forward pass stops
        right after that layer (GANSpace's trick), so this costs only the layers before it."""
        store = {}

        def hook(_module, _inputs, output):
            store["out"] = output
            raise _StopForward

        handle = self.layer_module().register_forward_hook(hook)
        try:
            self(z, y, truncation)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "out" not in store:
            raise RuntimeError(f"layer {self.direction_layer!r} was not called by forward()")
        return store["out"].reshape(store["out"].shape[0], -1)

    def linear_z_map(self):  # pragma: no cover - overridden where the layer is linear
        return None

    def fingerprint(self) -> list:
        return layer_fingerprint(self.layer_module())

    def describe(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (f"{self.generator_id}: {self.image_size}x{self.image_size}, {self.num_classes} "
                f"classes, latent {self.latent_dim}, {n / 1e6:.2f} M parameters")


@torch.no_grad()
def probe_linear_z_block(linear: nn.Module, latent_dim: int, other_dim: int) -> torch.Tensor:
    """The z-block W_z of a layer computing f(cat(z, e)) affinely: f(cat(I, 0)) - f(0), in
    float64-accumulated form, shape (H, latent_dim). Probing calls the module itself, so
    whatever weight normalisation it applies in its current mode is what we get."""
    p = next(linear.parameters())
    was_training = linear.training
    linear.eval()  # no power iteration of spectral norm while probing
    x = torch.zeros(latent_dim + 1, latent_dim + other_dim, device=p.device, dtype=p.dtype)
    x[:latent_dim, :latent_dim] = torch.eye(latent_dim, device=p.device, dtype=p.dtype)
    try:
        out = linear(x).float()
    finally:
        linear.train(was_training)
    return (out[:latent_dim] - out[latent_dim:]).T.contiguous()
