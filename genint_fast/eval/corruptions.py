"""The 15 ImageNet-C benchmark corruptions at 5 severities (Hendrycks & Dietterich, "Benchmarking
Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019), written from the
facts of the `imagecorruptions` 1.1.2 package (Michaelis et al., github.com/bethgelab/
imagecorruptions, Apache-2.0): the same per-severity constants, formulas, geometry, clipping and
dtype conversions, and the same random draws in the same order.

That package no longer imports on today's stack (it needs `pkg_resources`, fog uses `np.float_`,
glass blur passes `multichannel=` to scikit-image, and it needs the OpenCV GUI build), so this is a
replacement that needs only numpy, scipy, scikit-image, PIL and torch. The OpenCV calls it made are
reproduced in `genint_fast.eval.corruption_ops` (see there for how each one matches).

Randomness: every draw is taken from the `numpy.random.RandomState` passed in, with the same calls
and shapes, in the same order, as the package draws from numpy's global state, so
`corrupt_image(x, name, s, np.random.RandomState(k))` equals the package's output after
`np.random.seed(k)`. Two draws are batched where that is provably the same stream (glass blur's
per-pixel `randint(-d, d, size=(2,))` calls become one `randint` of all of them: the legacy bounded
integer sampler is stateless between values). The one exception is impulse noise: scikit-image
>= 0.19 `random_noise` ignores numpy's global state and draws from a fresh, OS-seeded PCG64, so the
package's impulse noise is not reproducible at all today; here its salt-and-pepper masks are drawn
as `rng.random_sample(shape) <= amount` then `rng.random_sample(shape) <= 0.5` (what today's
`random_noise` computes with `rng.random`, and the same doubles a `Generator` over the state's
MT19937 would give).

Grayscale (H, W) input: like the package, it is stacked to three channels and corrupted; the
three-channel result is then turned back into one channel with the ITU-R 601-2 luma transform of
PIL's `convert("L")` (so a corruption that keeps the channels equal returns them unchanged).

Batch API: `corrupt(images, name, severity, seed, start)` corrupts image i of an (N, 3, H, W)
uint8 tensor with `np.random.RandomState(seed_for(seed, name, severity, start + i))`; see
`seed_for`.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
from scipy.signal import fftconvolve

from .corruption_ops import (clipped_zoom, disk, frost_bgr, frost_resized, motion_blur,
                             plasma_fractal, rgb2gray_f32)

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt_image", "corrupt", "seed_for"]

# The 15 benchmark corruptions in the benchmark's order (defined with the scoring constants).
from .robustness import CORRUPTIONS  # noqa: E402

SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 32

_F32 = np.float32


# ----------------------------------------------------------------------------------------------
# the corruptions: x is an HxWx3 uint8 array; each returns an array of values in [0, 255] that
# the caller truncates to uint8 (np.uint8 of the float result, as the benchmark does)
# ----------------------------------------------------------------------------------------------

def _gaussian_noise(x, severity, rng):
    c = [.08, .12, 0.18, 0.26, 0.38][severity - 1]
    x = x / 255.
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x, severity, rng):
    c = [60, 25, 12, 5, 3][severity - 1]
    x = x / 255.
    return np.clip(rng.poisson(x * c) / float(c), 0, 1) * 255


def _impulse_noise(x, severity, rng):
    c = [.03, .06, .09, 0.17, 0.27][severity - 1]
    x = x / 255.
    out = x.copy()
    flipped = rng.random_sample(x.shape) <= c
    salted = rng.random_sample(x.shape) <= 0.5
    out[flipped & salted] = 1
    out[flipped & ~salted] = 0.0
    return np.clip(np.clip(out, 0.0, 1.0), 0, 1) * 255


def _defocus_blur(x, severity, rng):
    c = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    x = x / 255.
    kernel = disk(c[0], c[1])
    r = kernel.shape[0] // 2
    # cv2.filter2D per channel (BORDER_REFLECT_101), which OpenCV evaluates by DFT at this kernel
    # size: reflect-101 padding, then an FFT correlation ("valid" part) of all three channels
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    out = fftconvolve(padded, kernel[::-1, ::-1, np.newaxis], mode="valid", axes=(0, 1))
    return np.clip(out, 0, 1) * 255


def _glass_shuffle(x: np.ndarray, max_delta: int, iterations: int, rng) -> np.ndarray:
    """The benchmark's local pixel shuffle. Its loop visits h = H-d .. d+1 and w = W-d .. d+1
    (descending), draws (dx, dy) = rng.randint(-d, d, size=(2,)) and executes
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on an HxWx3 array; with numpy views that statement
    copies pixel (h', w') into (h, w) and leaves (h', w') as it was. Sequentially, a copy from a
    pixel already rewritten in the same pass sees the rewritten value. Here all draws are taken at
    once (the same stream) and each pass is resolved exactly with pointer jumping over a source
    map: a visited pixel takes its value from a pixel visited earlier in the pass (a larger
    raster index inside the visited block), transitively, or else from the previous pass."""
    h, w = x.shape[:2]
    d = max_delta
    hs = np.arange(h - d, d, -1)
    ws = np.arange(w - d, d, -1)
    if hs.size == 0 or ws.size == 0:
        return x
    draws = rng.randint(-d, d, size=(iterations, hs.size, ws.size, 2))
    n = h * w
    targets = (hs[:, None] * w + ws[None, :]).ravel()
    visited = np.zeros(n, dtype=bool)
    visited[targets] = True
    src = np.arange(n)
    for it in range(iterations):
        dx = draws[it, :, :, 0].ravel()
        dy = draws[it, :, :, 1].ravel()
        b = targets + dy * w + dx
        dep = visited[b] & (b > targets)
        val = src.copy()
        val[targets] = src[b]
        ptr = np.arange(n)
        ptr[targets[dep]] = b[dep]
        while True:
            nxt = ptr[ptr]
            if np.array_equal(nxt, ptr):
                break
            ptr = nxt
        src = val[ptr]
    return x.reshape(n, -1)[src].reshape(x.shape)


def _glass_blur(x, severity, rng):
    sigma, max_delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2),
                                    (1.5, 4, 2)][severity - 1]
    # skimage.filters.gaussian(img, sigma, channel_axis=-1) is this call (mode nearest, truncate 4)
    sig = (sigma, sigma, 0)
    x = np.uint8(ndi.gaussian_filter(x / 255., sig, mode="nearest", truncate=4.0) * 255)
    x = _glass_shuffle(x, max_delta, iterations, rng)
    return np.clip(ndi.gaussian_filter(x / 255., sig, mode="nearest", truncate=4.0), 0, 1) * 255


def _motion_blur_c(x, severity, rng):
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = rng.uniform(-45, 45)
    return np.clip(motion_blur(x, radius=c[0], sigma=c[1], angle=angle), 0, 255)


_ZOOMS = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
          np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))


def _zoom_blur(x, severity, rng):
    c = _ZOOMS[severity - 1]
    x = (x / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for z in c:
        layer = clipped_zoom(x, z)[:x.shape[0], :x.shape[1], :]
        if layer.shape == out.shape:
            out += layer
        else:                                   # never at these factors; kept for parity
            out[:layer.shape[0], :layer.shape[1]] += layer
    x = (x + out) / (len(c) + 1)
    return np.clip(x, 0, 1) * 255


def _snow(x, severity, rng):
    c = [(0.1, 0.3, 3, 0.5, 10, 4, 0.8),
         (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
         (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
         (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
         (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)][severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    snow = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    snow = clipped_zoom(snow[..., np.newaxis], c[2])
    snow[snow < c[3]] = 0
    snow = np.clip(snow.squeeze(), 0, 1)
    snow = motion_blur(snow, radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    snow = np.round(snow * 255).astype(np.uint8) / 255.
    snow = snow[..., np.newaxis][:x.shape[0], :x.shape[1], :]
    gray = rgb2gray_f32(x).reshape(x.shape[0], x.shape[1], 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + snow + np.rot90(snow, k=2), 0, 1) * 255


def _frost(x, severity, rng):
    c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    idx = rng.randint(5)
    fh, fw = frost_bgr(idx).shape[:2]
    h, w = x.shape[:2]
    if fh >= h and fw >= w:
        scaling = 1
    elif fh < h and fw >= w:
        scaling = h / fh
    elif fh >= h and fw < w:
        scaling = w / fw
    else:
        scaling = np.maximum(h / fh, w / fw)
    scaling *= 1.1
    new_w, new_h = int(np.ceil(fw * scaling)), int(np.ceil(fh * scaling))
    frost = frost_resized(idx, new_w, new_h)
    x0 = rng.randint(0, frost.shape[0] - h)
    y0 = rng.randint(0, frost.shape[1] - w)
    crop = frost[x0:x0 + h, y0:y0 + w][..., [2, 1, 0]]
    return np.clip(c[0] * x + c[1] * crop, 0, 255)


def _fog(x, severity, rng):
    c = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)][severity - 1]
    h, w = x.shape[:2]
    max_side = int(max(x.shape))
    map_size = 1 if max_side == 0 else 2 ** (max_side - 1).bit_length()
    x = x / 255.
    max_val = x.max()
    x += c[0] * plasma_fractal(rng, map_size, c[1])[:h, :w][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _brightness(x, severity, rng):
    from skimage.color import hsv2rgb, rgb2hsv
    c = [.1, .2, .3, .4, .5][severity - 1]
    x = rgb2hsv(x / 255.)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(x), 0, 1) * 255


def _contrast(x, severity, rng):
    c = [0.4, .3, .2, .1, .05][severity - 1]
    x = x / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic_transform(x, severity, rng):
    image = np.array(x, dtype=np.float32) / 255.
    shape = image.shape
    sigma = np.array(shape[:2]) * 0.01
    alpha = [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12][severity - 1]
    max_d = shape[0] * 0.005
    # skimage.filters.gaussian(u, sigma, mode="reflect", truncate=3) on a float64 2-D array
    dx = (ndi.gaussian_filter(rng.uniform(-max_d, max_d, size=shape[:2]), sigma, mode="reflect",
                              truncate=3) * alpha).astype(np.float32)
    dy = (ndi.gaussian_filter(rng.uniform(-max_d, max_d, size=shape[:2]), sigma, mode="reflect",
                              truncate=3) * alpha).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    gx, gy, gz = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = (np.reshape(gy + dy, (-1, 1)), np.reshape(gx + dx, (-1, 1)), np.reshape(gz, (-1, 1)))
    out = ndi.map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)
    return np.clip(out, 0, 1) * 255


def _pixelate(x, severity, rng):
    c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    h, w = x.shape[:2]
    im = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(im.resize((w, h), Image.NEAREST))


def _jpeg_compression(x, severity, rng):
    c = [25, 18, 15, 10, 7][severity - 1]
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=c)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


_FUNCS = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "defocus_blur": _defocus_blur, "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_c, "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost,
    "fog": _fog, "brightness": _brightness, "contrast": _contrast,
    "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
assert tuple(_FUNCS) == CORRUPTIONS


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _check_name_severity(name, severity):
    if not isinstance(name, str) or name not in _FUNCS:
        raise ValueError(f"Unknown corruption {name!r}: use one of {', '.join(CORRUPTIONS)}.")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or int(severity) not in SEVERITIES:
        raise ValueError(f"Severity must be an integer in 1..5, got {severity!r}: pass one of "
                         f"{SEVERITIES}.")


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """PIL's convert("L"): (R * 19595 + G * 38470 + B * 7471 + 2**15) >> 16."""
    v = rgb.astype(np.uint32)
    return ((v[..., 0] * 19595 + v[..., 1] * 38470 + v[..., 2] * 7471 + 0x8000) >> 16) \
        .astype(np.uint8)


def _apply(x: np.ndarray, name: str, severity: int, rng) -> np.ndarray:
    return np.asarray(_FUNCS[name](x, int(severity), rng)).astype(np.uint8)


def corrupt_image(image: np.ndarray, name: str, severity: int,
                  rng: np.random.RandomState) -> np.ndarray:
    """Corrupt one uint8 image, HxWx3 (or HxW / HxWx1 grayscale, H, W >= 32), with corruption
    `name` at `severity` (1..5), drawing all randomness from `rng`. Returns uint8 of the same
    shape. With rng = np.random.RandomState(k) this equals imagecorruptions' `corrupt` after
    np.random.seed(k) (see the module docstring for the exceptions and tolerances)."""
    _check_name_severity(name, severity)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}: convert it "
                         f"with np.asarray(image, dtype=np.uint8).")
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype must be uint8, got {image.dtype}: scale to 0..255 and "
                         f"convert with .astype(np.uint8).")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"image shape must be HxWx3 or HxW, got {image.shape}: pass one image "
                         f"with channels last.")
    if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
        raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} but must be at least "
                         f"{MIN_SIDE}x{MIN_SIDE} pixels: upsample it first.")
    if not isinstance(rng, np.random.RandomState):
        raise ValueError("rng must be a numpy.random.RandomState: pass "
                         "np.random.RandomState(seed).")
    if image.ndim == 3 and image.shape[2] == 3:
        return _apply(np.ascontiguousarray(image), name, severity, rng)
    gray = image.reshape(image.shape[0], image.shape[1])
    out = _to_gray(_apply(np.stack([gray] * 3, axis=-1), name, severity, rng))
    return out.reshape(image.shape)


_M64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def seed_for(seed: int, name: str, severity: int, index: int) -> int:
    """The RandomState seed of image `index` in `corrupt(..., name, severity, seed)`: a 32-bit
    integer, stable across versions and platforms:
        h = splitmix64(seed mod 2**64)
        for v in (CORRUPTIONS.index(name), severity, index): h = splitmix64(h XOR v)
        return h >> 32
    where splitmix64(z) is Steele/Lea/Flood's finaliser of z + 0x9E3779B97F4A7C15
    (xor-shift 30, * 0xBF58476D1CE4E5B9, xor-shift 27, * 0x94D049BB133111EB, xor-shift 31, all
    mod 2**64)."""
    _check_name_severity(name, severity)
    h = _splitmix64(int(seed) & _M64)
    for v in (CORRUPTIONS.index(name), int(severity), int(index)):
        h = _splitmix64(h ^ (v & _M64))
    return h >> 32


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0,
            start: int = 0) -> torch.Tensor:
    """Corrupt a batch (N, 3, H, W) uint8 -> (N, 3, H, W) uint8 (same device), deterministically:
    image i is `corrupt_image(image_i, name, severity, np.random.RandomState(seed_for(seed, name,
    severity, start + i)))`; `start` is the batch's offset in a larger set, so a set gives the
    same pixels however it is cut into batches."""
    _check_name_severity(name, severity)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}: wrap them "
                         f"with torch.as_tensor.")
    if images.dtype != torch.uint8:
        raise ValueError(f"images dtype must be torch.uint8, got {images.dtype}: scale to 0..255 "
                         f"and convert with .to(torch.uint8).")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images shape must be (N, 3, H, W), got {tuple(images.shape)}: pass a "
                         f"batch of RGB images, channels first.")
    if images.shape[2] < MIN_SIDE or images.shape[3] < MIN_SIDE:
        raise ValueError(f"images are {images.shape[2]}x{images.shape[3]} but must be at least "
                         f"{MIN_SIDE}x{MIN_SIDE} pixels: upsample them first.")
    x = images.detach().to("cpu").permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(x)
    rng = np.random.RandomState()
    for i in range(x.shape[0]):
        rng.seed(seed_for(seed, name, severity, start + i))
        out[i] = _apply(x[i], name, severity, rng)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(images.device)
