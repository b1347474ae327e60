"""Export of the built-in benchmark as an image-folder tree (PNG or JPEG per class, one
nuisance.csv per split, a JSON manifest), byte-identical for the same arguments."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from .benchmark import DEFAULT_RHO, DEFAULT_SIZES, EXPORT_SPLITS, SIZE
from .digits import BiasedDigits, _check, class_names_of, make_biased_digits

def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    if size == images.shape[-1]:
        return images
    x = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def save_image_folder(ds: BiasedDigits, out_dir: str, *, fmt: str = "png", size: int = SIZE,
                      quality: int = 95, threads: int = 4) -> list[str]:
    """Write a split as out_dir/<class>/<index>.<fmt> plus out_dir/nuisance.csv; returns the
    written image paths (in sample order)."""
    from PIL import Image

    if fmt not in ("png", "jpg"):
        raise ValueError(f"format must be 'png' or 'jpg', got {fmt!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    imgs = _resize_uint8(ds.images, size).permute(0, 2, 3, 1).contiguous().numpy()
    width = len(str(len(ds) - 1))
    labels = ds.labels.tolist()
    for c in ds.classes:
        os.makedirs(os.path.join(out_dir, c), exist_ok=True)
    paths = [os.path.join(out_dir, ds.classes[y], f"{i:0{width}d}.{fmt}")
             for i, y in enumerate(labels)]

    def save(i):
        im = Image.fromarray(imgs[i])
        if fmt == "png":
            im.save(paths[i], format="PNG", compress_level=6)
        else:
            im.save(paths[i], format="JPEG", quality=quality)

    with ThreadPoolExecutor(max(1, threads)) as ex:
        list(ex.map(save, range(len(ds))))
    nz = ds.nuisance.tolist()
    fl = ds.follows.tolist()
    env = ds.environment.tolist() if ds.environment is not None else [-1] * len(ds)
    with open(os.path.join(out_dir, "nuisance.csv"), "w") as fh:
        fh.write("file,label,stroke,background,stroke_follows,background_follows,source,"
                 "environment\n")
        for i, p in enumerate(paths):
            fh.write(f"{os.path.relpath(p, out_dir)},{labels[i]},{nz[i][0]},{nz[i][1]},"
                     f"{int(fl[i][0])},{int(fl[i][1])},{int(ds.source[i])},{env[i]}\n")
    return paths


def export_biased_digits(out_dir: str, *, variant: str = "colored", rho: float = DEFAULT_RHO,
                         seed: int = 0, splits=EXPORT_SPLITS, sizes: dict | None = None,
                         fmt: str = "png", image_size: int = SIZE, shapes: str = "mnist") -> dict:
    """Export the benchmark as an image-folder tree: out_dir/<split>/<class>/<index>.png, one
    nuisance.csv per split and out_dir/biased_digits.json with the parameters. Returns the
    manifest (also written as JSON)."""
    variant = _check(variant, "train", rho, shapes)
    for s in splits:
        _check(variant, s, rho, shapes)
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir!r} exists and is not a folder")
    for s in splits:
        d = os.path.join(out_dir, s)
        if os.path.isdir(d) and os.listdir(d):
            raise ValueError(f"{d!r} already exists and is not empty; choose another --out or "
                             "remove it first")
    manifest = {"benchmark": "biased-digits", "variant": variant, "rho": float(rho),
                "seed": int(seed), "shapes": shapes, "format": fmt, "image_size": image_size,
                "classes": class_names_of(variant), "splits": {}}
    for s in splits:
        ds = make_biased_digits(variant, s, rho, seed, sizes[s], shapes=shapes)
        save_image_folder(ds, os.path.join(out_dir, s), fmt=fmt, size=image_size)
        manifest["splits"][s] = {"n": len(ds), "rho": ds.rho}
    with open(os.path.join(out_dir, "biased_digits.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    return manifest
