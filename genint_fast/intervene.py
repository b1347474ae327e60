"""The intervention sampler X_int = I(t, k, s, Y') (SPEC section 4) and the observational one.

Each batch: labels Y' uniform over the classes, latents z = t * TruncNormal(-2, 2), m distinct
directions among the top k with steps U[-s, s] (or per-direction ranges), the steered latents
z* = steer(z, U, sigma, mu, idx, alpha, mode) from the fused op genint_fast.ops.steer, and the
images G(z*, Y', t). Everything is drawn from one torch.Generator on the generator's device, so
a seed reproduces the stream; the nuisance record says what was applied to every image.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import ops
from .directions import Directions
from .generators.base import ConditionalGenerator, check_truncation, truncated_latents

__all__ = ["NuisanceRecord", "InterventionSampler", "ObservationalSampler", "make_sampler",
           "reference_ranges",
           "draw_images", "matched_norm_scale", "intervention_grid", "save_grid",
           "dump_image_folder"]


def reference_ranges(k: int | None = None) -> torch.Tensor:
    """The reference code's per-direction step ranges, shipped as data
    (genint_fast/resources/reference_ranges.csv): [lo_j, hi_j] in latent standard deviations for
    the 60 directions it edited, one direction per image. Shape (min(k, 60), 2); asking for more
    than 60 is an error (the reference has no range for them)."""
    from importlib.resources import files

    rows = []
    text = files("genint_fast").joinpath("resources/reference_ranges.csv").read_text()
    for line in text.splitlines():
        if line and not line.startswith("#") and not line.startswith("direction"):
            j, lo, hi = line.split(",")
            rows.append((float(lo), float(hi)))
    table = torch.tensor(rows, dtype=torch.float32)
    if k is None:
        return table
    if not 1 <= int(k) <= table.shape[0]:
        raise ValueError(f"the reference range table covers directions 0-{table.shape[0] - 1}; "
                         f"asked for {k} (use top_k <= {table.shape[0]} or give scale)")
    return table[:int(k)]


@dataclass
class NuisanceRecord:
    """What produced a batch: labels (B,), base latents z (B, D), the directions idx (B, m)
    and steps alpha (B, m) applied, the latents fed to the generator z_star (B, D)."""

    labels: torch.Tensor
    z: torch.Tensor
    idx: torch.Tensor
    alpha: torch.Tensor
    z_star: torch.Tensor
    truncation: float
    mode: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dense(self, k: int) -> torch.Tensor:
        """(B, k) matrix with the step of direction j at column j (0 where not chosen)."""
        out = torch.zeros(len(self), int(k), dtype=self.alpha.dtype, device=self.alpha.device)
        if self.idx.numel():
            out.scatter_(1, self.idx, self.alpha)
        return out

    def rows(self) -> list:
        """One JSON-ready dict per image."""
        lab, idx, alpha = self.labels.tolist(), self.idx.tolist(), self.alpha.float().tolist()
        return [{"label": lab[i], "directions": idx[i], "steps": alpha[i],
                 "truncation": self.truncation, "mode": self.mode} for i in range(len(lab))]


class _Sampler:
    def __init__(self, generator, *, truncation, batch_size, seed, classes):
        if not isinstance(generator, ConditionalGenerator):
            raise TypeError("generator must be a genint_fast ConditionalGenerator")
        self.generator = generator
        self.truncation = check_truncation(truncation)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = generator.device
        self.rng = torch.Generator(device=self.device).manual_seed(self.seed)
        if classes is None:
            self.classes = None
        else:
            self.classes = torch.as_tensor(classes, dtype=torch.long, device=self.device)
            if self.classes.dim() != 1 or self.classes.numel() == 0 or \
                    int(self.classes.min()) < 0 or int(self.classes.max()) >= generator.num_classes:
                raise ValueError(f"classes must be a non-empty list of ids in "
                                 f"[0, {generator.num_classes})")

    def _labels(self, b):
        if self.classes is None:
            return torch.randint(self.generator.num_classes, (b,), generator=self.rng,
                                 device=self.device)
        pick = torch.randint(self.classes.numel(), (b,), generator=self.rng, device=self.device)
        return self.classes[pick]

    def _latents(self, b):
        return truncated_latents(b, self.generator.latent_dim, self.truncation,
                                 generator=self.rng, device=self.device)

    def __iter__(self):
        return self

    def __next__(self):
        return self.sample()

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "seed": self.seed}

    def load_state_dict(self, state) -> None:
        self.rng.set_state(state["rng"])


class InterventionSampler(_Sampler):
    """Batches (images, labels, NuisanceRecord) of generative interventions, on the generator's
    device; an endless iterator (next(sampler)) or sample(batch_size).

    Args: directions (Directions, checked against the generator), truncation t, top_k, scale s
    (steps U[-s, s], in standard deviations: see Directions) or ranges ((K, 2) [lo_j, hi_j], e.g.
    reference_ranges()), mode "add" (paper) or "set" (reference code), clamp (optional bound on
    z*), classes (restrict labels to these ids; default all), seed, and the style:
    - "multi": every image has its own latent and m distinct directions added to it;
    - "one" (reference code): one direction per image; `per_latent` images (reference: 5) share
      a base latent and a class and edit distinct directions of it (per_latent <= top_k).
    """

    def __init__(self, generator, directions: Directions, *, truncation=1.0, top_k=60, m=5,
                 scale=1.0, ranges=None, mode="add", clamp=None, batch_size=64, seed=0,
                 classes=None, check=True, style="multi", per_latent=5):
        super().__init__(generator, truncation=truncation, batch_size=batch_size, seed=seed,
                         classes=classes)
        if check:
            directions.check_compatible(generator)
        if mode not in ("add", "set"):
            raise ValueError(f'mode must be "add" or "set", got {mode!r}')
        if style not in ("multi", "one"):
            raise ValueError(f'style must be "multi" or "one", got {style!r}')
        if not 1 <= int(top_k) <= directions.k:
            raise ValueError(f"top_k must be in [1, {directions.k}] (the directions file has "
                             f"{directions.k}), got {top_k}")
        if style == "multi" and not 1 <= int(m) <= int(top_k):
            raise ValueError(f"m must be in [1, top_k={top_k}], got {m}")
        if style == "one" and not 1 <= int(per_latent) <= int(top_k):
            raise ValueError(f"per_latent must be in [1, top_k={top_k}], got {per_latent}")
        if ranges is not None:
            ranges = torch.as_tensor(ranges, dtype=torch.float32)
            if ranges.dim() != 2 or ranges.shape[1] != 2 or ranges.shape[0] < int(top_k):
                raise ValueError(f"ranges must have shape (K, 2) with K >= top_k={top_k}, got "
                                 f"{tuple(ranges.shape)}")
            ranges = ranges.to(self.device)
            scale = None
        elif scale is None or float(scale) < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        self.directions = directions.to(self.device, torch.float32)
        self.directions.steering_args(torch.zeros(1, 1, dtype=torch.long, device=self.device),
                                      torch.zeros(1, 1, device=self.device), mode)  # units known
        self.top_k, self.m, self.mode = int(top_k), int(m), mode
        self.style, self.per_latent = style, int(per_latent)
        self.scale = None if scale is None else float(scale)
        self.ranges = ranges
        self.clamp = clamp

    @torch.no_grad()
    def steer_latents(self, b):
        """(labels, z, idx, alpha, z_star) for b images, drawn in a fixed order; alpha in
        standard deviations, z the base latents (repeated per image in style "one")."""
        if self.style == "one":
            groups = -(-b // self.per_latent)
            labels = self._labels(groups).repeat_interleave(self.per_latent)[:b]
            z = self._latents(groups).repeat_interleave(self.per_latent, dim=0)[:b]
            idx, alpha = ops.sample_steps(groups, self.top_k, self.per_latent, scale=self.scale,
                                          ranges=self.ranges, generator=self.rng)
            idx, alpha = idx.reshape(-1, 1)[:b].contiguous(), alpha.reshape(-1, 1)[:b].contiguous()
        else:
            labels = self._labels(b)
            z = self._latents(b)
            idx, alpha = ops.sample_steps(b, self.top_k, self.m, scale=self.scale,
                                          ranges=self.ranges, generator=self.rng)
        d = self.directions
        sig, steps = d.steering_args(idx, alpha, self.mode)
        z_star = ops.steer(z, d.u, sig, d.mu, idx, steps, self.mode, self.clamp)
        return labels, z, idx, alpha, z_star

    @torch.no_grad()
    def sample(self, batch_size=None):
        b = self.batch_size if batch_size is None else int(batch_size)
        labels, z, idx, alpha, z_star = self.steer_latents(b)
        images = self.generator(z_star, labels, self.truncation)
        return images, labels, NuisanceRecord(labels, z, idx, alpha, z_star, self.truncation,
                                              self.mode)


class ObservationalSampler(_Sampler):
    """Batches (images, labels, NuisanceRecord with no directions) from the GAN without
    steering: the GAN-augmentation baseline (SPEC 6 uses truncation 0.2).

    latent_scale: multiply every latent by this factor (default 1). The matched-norm control sets
    it to the ratio of an intervention's mean latent norm to a plain latent's (see
    `matched_norm_scale`): unsteered latents that are as far from the origin as steered ones."""

    def __init__(self, generator, *, truncation=1.0, batch_size=64, seed=0, classes=None,
                 latent_scale=1.0):
        super().__init__(generator, truncation=truncation, batch_size=batch_size, seed=seed,
                         classes=classes)
        if not float(latent_scale) > 0:
            raise ValueError(f"latent_scale must be > 0, got {latent_scale}")
        self.latent_scale = float(latent_scale)

    @torch.no_grad()
    def sample(self, batch_size=None):
        b = self.batch_size if batch_size is None else int(batch_size)
        labels = self._labels(b)
        z = self._latents(b) * self.latent_scale
        images = self.generator(z, labels, self.truncation)
        empty = torch.zeros(b, 0, dtype=torch.long, device=self.device)
        return images, labels, NuisanceRecord(labels, z, empty, empty.float(), z,
                                              self.truncation, "none")


@torch.no_grad()
def draw_images(sampler, n, chunk=256):
    """n images from a sampler, in [0, 1] on the CPU, with their labels (drawn `chunk` at a
    time)."""
    xs, ys, have = [], [], 0
    while have < int(n):
        x, y, _ = sampler.sample(min(int(chunk), int(n) - have))
        xs.append(((x.float() + 1) / 2).clamp(0, 1).cpu())
        ys.append(y.cpu())
        have += x.shape[0]
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def matched_norm_scale(sampler: InterventionSampler, n=2048) -> float:
    """Mean norm of the sampler's steered latents over that of its base latents (measured on n
    draws of a copy of its random stream; the sampler's own state is left as it was)."""
    state = sampler.rng.get_state()
    try:
        _, z, _, _, z_star = sampler.steer_latents(int(n))
    finally:
        sampler.rng.set_state(state)
    return float(z_star.norm(dim=1).mean() / z.norm(dim=1).mean())


def make_sampler(generator, directions, *, truncation=1.0, top_k=20, m=5, scale=1.0,
                 mode="add", style="multi", seed=0, control="none", batch_size=256):
    """The sampler of one generated set: control "none" steers with `directions` (scale 0:
    observational samples);
    "random-directions" with random unit directions of the same size and steps (as GANSpace
    compares); "matched-norm" draws unsteered latents scaled to the steered latents' mean norm."""
    if control not in ("none", "random-directions", "matched-norm"):
        raise ValueError(f"control must be none, random-directions or matched-norm, got "
                         f"{control!r}")
    if control == "none" and scale == 0:      # no step: the observational samples
        return ObservationalSampler(generator, truncation=truncation, batch_size=batch_size,
                                    seed=seed)
    d = directions.random_like(seed) if control == "random-directions" else directions
    s = InterventionSampler(generator, d, truncation=truncation, top_k=top_k, m=m, scale=scale,
                            mode=mode, style=style, batch_size=batch_size, seed=seed)
    if control == "matched-norm":
        return ObservationalSampler(generator, truncation=truncation, batch_size=batch_size,
                                    seed=seed, latent_scale=matched_norm_scale(s))
    return s


@torch.no_grad()
def intervention_grid(generator, directions: Directions, *, rows=None, steps=7, scale=3.0,
                      truncation=1.0, mode="add", seed=0, class_ids=None, base_z=None):
    """The paper's Figure 2: one row per direction (rows: list of direction ids, default the
    first min(8, k)), one column per step in linspace(-scale, scale, steps); each row keeps one
    z and one class. Returns images (rows * steps, 3, H, W) in [-1, 1], row-major."""
    t = check_truncation(truncation)
    directions.check_compatible(generator)
    rows = list(range(min(8, directions.k))) if rows is None else [int(r) for r in rows]
    if not rows or min(rows) < 0 or max(rows) >= directions.k:
        raise ValueError(f"grid rows must be direction ids in [0, {directions.k})")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = generator.device
    rng = torch.Generator(device=device).manual_seed(int(seed))
    n = len(rows)
    if class_ids is None:
        class_ids = torch.randint(generator.num_classes, (n,), generator=rng, device=device)
    class_ids = torch.as_tensor(class_ids, dtype=torch.long, device=device).reshape(-1)
    if class_ids.numel() == 1:
        class_ids = class_ids.expand(n)
    if class_ids.numel() != n:
        raise ValueError(f"give one class id or one per row ({n}), got {class_ids.numel()}")
    z = base_z if base_z is not None else truncated_latents(n, generator.latent_dim, t,
                                                            generator=rng, device=device)
    d = directions.to(device, torch.float32)
    alphas = torch.linspace(-float(scale), float(scale), int(steps), device=device)
    zz = z.repeat_interleave(int(steps), dim=0)
    idx = torch.tensor(rows, device=device).repeat_interleave(int(steps)).unsqueeze(1)
    alpha = alphas.repeat(n).unsqueeze(1)
    sig, steps_ = d.steering_args(idx, alpha, mode)
    z_star = ops.steer(zz, d.u, sig, d.mu, idx, steps_, mode)
    labels = class_ids.repeat_interleave(int(steps))
    return generator(z_star, labels, t).float()


def save_grid(images, path, ncols) -> Path:
    """Write images in [-1, 1] as one PNG grid (torchvision.utils.save_image)."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), str(path), nrow=int(ncols), normalize=True,
               value_range=(-1, 1), padding=2)
    return path


def dump_image_folder(sampler, out_dir, count, *, class_names=None, progress=None,
                      overwrite=False) -> Path:
    """Write `count` sampled images as out_dir/<class>/<n>.png (an image-folder tree) and their
    nuisance records as out_dir/records.jsonl (one JSON object per image, with its file).

    out_dir must be new or empty: a second dump into the same folder would overwrite the first
    one's images while its records stay. overwrite=True first deletes an earlier dump there (the
    files its records.jsonl lists, then records.jsonl) and writes into the folder."""
    from torchvision.utils import save_image

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"dump folder {out} exists and is not a folder; give a new folder name")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"dump folder {out} is not empty (an earlier dump?); give a new "
                             "folder, or overwrite=True to replace the earlier dump")
        _remove_dump(out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out / "records.jsonl", "w", encoding="utf-8") as fh:
        while written < int(count):
            b = min(sampler.batch_size, int(count) - written)
            images, labels, record = sampler.sample(b)
            images = ((images.float().clamp(-1, 1) + 1) / 2).cpu()
            for i, row in enumerate(record.rows()):
                name = class_names[row["label"]] if class_names else f"{row['label']:04d}"
                folder = out / name
                folder.mkdir(exist_ok=True)
                file = folder / f"{written + i:08d}.png"
                save_image(images[i], str(file))
                row["file"] = str(file.relative_to(out))
                fh.write(json.dumps(row) + "\n")
            written += b
            if progress is not None:
                progress(written, int(count))
    return out


def _remove_dump(out: Path) -> None:
    """Delete the dump in `out`: the image files its records.jsonl lists (only files inside
    `out`), class folders left empty, and records.jsonl."""
    records = out / "records.jsonl"
    if not records.is_file():
        return
    root = out.resolve()
    folders = set()
    for line in records.read_text(encoding="utf-8").splitlines():
        try:
            rel = json.loads(line).get("file")
        except (ValueError, AttributeError):
            continue
        if not isinstance(rel, str):
            continue
        f = (out / rel).resolve()
        if root in f.parents and f.is_file():
            f.unlink()
            folders.add(f.parent)
    for folder in folders:
        if folder != root and not any(folder.iterdir()):
            folder.rmdir()
    records.unlink()
