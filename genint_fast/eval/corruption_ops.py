"""The image operations the ImageNet-C corruptions (`genint_fast.eval.corruptions`) are built
from: the OpenCV calls of the `imagecorruptions` 1.1.2 package, emulated without OpenCV, and the
package's own helpers (disk kernel, plasma fractal, clipped zoom, motion blur, the frost images).

The OpenCV calls are reproduced as follows:
- `cv2.GaussianBlur` of the defocus disk (float32): the separable 1-D Gaussian kernel and the
  rounding of OpenCV's float32 row/column passes (fused multiply-adds where OpenCV's AVX2 code
  uses them) are emulated; the five disk kernels come out bit-identical to OpenCV 5.0 on an AVX2
  machine;
- `cv2.filter2D` (float64 image, BORDER_REFLECT_101): reflect-101 padding and an FFT correlation
  (`scipy.signal.fftconvolve`). OpenCV also takes a DFT for kernels this large; the two results
  differ by about 1e-16, which after the `uint8` truncation changes a value only if it lies within
  ~1e-13 of an integer (flat regions land about 1e-8 away: the disks do not sum to exactly 1);
- `cv2.cvtColor(RGB2GRAY)` on float32 (snow): `fma(B, .114, fma(R, .299, G * .587))` in float32,
  as OpenCV evaluates it (bit-identical);
- `cv2.imread` of the frost images: PIL decoding in BGR order (bit-identical for the six images);
- `cv2.resize(INTER_CUBIC)` of the frost image: separable Keys cubic (A = -0.75) with replicated
  borders, evaluated in float64 and rounded to nearest. OpenCV's wheel hands this to Intel IPP,
  whose float32 rounding differs: about 1e-5 of the resized frost values differ by one grey level
  (so after the 0.4-0.75 blend a frost output value differs by at most 1, in about 1e-5 of them).
"""
from __future__ import annotations

import functools
import io
import math
from importlib import resources

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

_F32 = np.float32


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def fma32(a, b, c):
    """float32 fused multiply-add, round(a * b + c) once: the float32 product is exact in float64
    and the float64 sum is then rounded to float32 (a double rounding that can differ from a true
    fma only when the float64 sum lands exactly on a float32 tie, probability ~2**-29)."""
    return (np.asarray(a, np.float64) * np.float64(b) + np.asarray(c, np.float64)).astype(_F32)


def _gauss_kernel_1d(n: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(n, sigma, CV_32F): exp computed in double, stored as float32, summed
    in double, scaled by 1 / sum in double and stored as float32."""
    x = np.arange(n, dtype=np.float64) - (n - 1) * 0.5
    t = np.exp((-0.5 / (sigma * sigma)) * x * x).astype(_F32)
    s = 1.0 / float(np.sum(t.astype(np.float64)))
    return (t.astype(np.float64) * s).astype(_F32)


def _reflect101_pad(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    return np.pad(a, pad, mode="reflect")        # numpy "reflect" is OpenCV BORDER_REFLECT_101


def gaussian_blur_f32(img: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur(img, (ksize, ksize), sigma) for a small 2-D float32 image, ksize 3 or 5,
    border BORDER_REFLECT_101, with OpenCV 5's (AVX2 build) float32 rounding:
    - row pass: ksize 3 rounds the exact three-term sum once (what OpenCV's code gives);
      ksize 5 is the symmetric form fma(x[-2] + x[2], k2, fma(x[-1] + x[1], k1, x[0] * k0));
    - column pass: the symmetric fma form, except that the columns past the last full block of 16
      (OpenCV's SSE block of 4) use separate multiply and add."""
    k = _gauss_kernel_1d(ksize, sigma)
    r = ksize // 2
    h, w = img.shape
    p = _reflect101_pad(img.astype(_F32), r, 1)
    cols = [p[:, j:j + w] for j in range(ksize)]
    if ksize == 3:
        row = sum(c.astype(np.float64) * np.float64(kj) for c, kj in zip(cols, k)).astype(_F32)
    else:
        row = cols[r] * k[r]
        for j in range(1, r + 1):
            row = fma32(cols[r - j] + cols[r + j], k[r + j], row)
    p = _reflect101_pad(row, r, 0)
    rows = [p[j:j + h] for j in range(ksize)]
    fused = rows[r] * k[r]
    plain = rows[r] * k[r]
    for j in range(1, r + 1):
        pair = rows[r - j] + rows[r + j]
        fused = fma32(pair, k[r + j], fused)
        plain = plain + pair * k[r + j]
    out = fused
    if ksize != 3:
        n16 = (w // 16) * 16
        n4 = n16 + ((w - n16) // 4) * 4
        out[:, n16:n4] = plain[:, n16:n4]
    return out


@functools.lru_cache(maxsize=None)
def disk(radius: int, alias_blur: float) -> np.ndarray:
    """The benchmark's anti-aliased disk (float32), returned as float64 for the filter."""
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        L = np.arange(-radius, radius + 1)
        ksize = 5
    X, Y = np.meshgrid(L, L)
    aliased = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=_F32)
    aliased /= np.sum(aliased)
    out = gaussian_blur_f32(aliased, ksize, alias_blur).astype(np.float64)
    out.setflags(write=False)
    return out


def plasma_fractal(rng, mapsize: int, wibbledecay: float) -> np.ndarray:
    """Diamond-square height map in [0, 1], side `mapsize` (a power of two); the random draws
    are rng.uniform(-wibble, wibble, shape) for the squares, then the two diamond sets, per
    level, as in the benchmark."""
    assert mapsize & (mapsize - 1) == 0
    m = np.zeros((mapsize, mapsize), dtype=np.float64)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        # squares
        corners = m[0:mapsize:step, 0:mapsize:step]
        acc = corners + np.roll(corners, shift=-1, axis=0)
        acc += np.roll(acc, shift=-1, axis=1)
        m[half:mapsize:step, half:mapsize:step] = wibbled_mean(acc)
        # diamonds
        dr = m[half:mapsize:step, half:mapsize:step]
        ul = m[0:mapsize:step, 0:mapsize:step]
        lt = (dr + np.roll(dr, 1, axis=0)) + (ul + np.roll(ul, -1, axis=1))
        m[0:mapsize:step, half:mapsize:step] = wibbled_mean(lt)
        tt = (dr + np.roll(dr, 1, axis=1)) + (ul + np.roll(ul, -1, axis=0))
        m[half:mapsize:step, 0:mapsize:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m -= m.min()
    return m / m.max()


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """Centre crop of ceil(side / z) then scipy linear zoom by z (output may exceed the input)."""
    ch0 = int(np.ceil(img.shape[0] / float(zoom_factor)))
    top0 = (img.shape[0] - ch0) // 2
    ch1 = int(np.ceil(img.shape[1] / float(zoom_factor)))
    top1 = (img.shape[1] - ch1) // 2
    return ndi.zoom(img[top0:top0 + ch0, top1:top1 + ch1], (zoom_factor, zoom_factor, 1), order=1)


@functools.lru_cache(maxsize=None)
def _motion_kernel(width: int, sigma: float) -> np.ndarray:
    k = np.exp(-np.arange(width) ** 2 / (2 * (sigma ** 2))) / (np.sqrt(2 * np.pi) * sigma)
    k = k / np.sum(k)
    k.setflags(write=False)
    return k


def motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """Sum of kernel[i] * (x shifted by i pixels along `angle`, edges replicated), accumulated in
    the benchmark's order (float64); stops once a shift reaches the image size."""
    width = radius * 2 + 1
    kernel = _motion_kernel(width, sigma)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hyp = math.hypot(point[0], point[1])
    h, w = x.shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    blurred = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hyp) - 0.5)
        dx = -math.ceil(((i * point[1]) / hyp) - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        shifted = x
        if dx != 0:
            shifted = shifted[:, np.clip(cols - dx, 0, w - 1)]
        if dy != 0:
            shifted = shifted[np.clip(rows - dy, 0, h - 1)]
        blurred = blurred + kernel[i] * shifted
    return blurred


# ----------------------------------------------------------------------------------------------
# frost images
# ----------------------------------------------------------------------------------------------

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


@functools.lru_cache(maxsize=None)
def frost_bgr(idx: int) -> np.ndarray:
    """Frost image idx (0-based), decoded once, uint8 HxWx3 in BGR order like cv2.imread
    (an alpha channel, where present, is dropped as IMREAD_COLOR does)."""
    ref = resources.files("genint_fast").joinpath("resources").joinpath("frost") \
        .joinpath(FROST_FILES[idx])
    with Image.open(io.BytesIO(ref.read_bytes())) as im:
        rgb = np.asarray(im.convert("RGB"))
    out = np.ascontiguousarray(rgb[..., ::-1])
    out.setflags(write=False)
    return out


def _cubic_weights(dst: int, src: int):
    """Source taps (replicated border) and Keys cubic weights (A = -0.75) for resizing src -> dst
    samples with OpenCV's pixel-centre mapping."""
    scale = src / dst
    f = (np.arange(dst) + 0.5) * scale - 0.5
    s = np.floor(f)
    t = f - s
    a = -0.75
    t1 = t + 1
    c0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    c1 = ((a + 2) * t - (a + 3)) * t * t + 1
    u = 1 - t
    c2 = ((a + 2) * u - (a + 3)) * u * u + 1
    c3 = 1 - c0 - c1 - c2
    idx = np.clip(s.astype(np.int64)[:, None] + np.arange(-1, 3)[None], 0, src - 1)
    return idx, np.stack([c0, c1, c2, c3], 1)


def resize_cubic(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """cv2.resize(img, (new_w, new_h), interpolation=INTER_CUBIC) for uint8 HxWxC (to about 1e-5
    of the values differing by 1 from the IPP-backed OpenCV wheel, see the module docstring)."""
    h, w = img.shape[:2]
    xi, xc = _cubic_weights(new_w, w)
    yi, yc = _cubic_weights(new_h, h)
    a = img.astype(np.float64)
    hor = a[:, xi[:, 0]] * xc[None, :, 0, None]
    for k in range(1, 4):
        hor = hor + a[:, xi[:, k]] * xc[None, :, k, None]
    ver = hor[yi[:, 0]] * yc[:, 0, None, None]
    for k in range(1, 4):
        ver = ver + hor[yi[:, k]] * yc[:, k, None, None]
    return np.clip(np.rint(ver), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def frost_resized(idx: int, new_w: int, new_h: int) -> np.ndarray:
    out = resize_cubic(frost_bgr(idx), new_w, new_h)
    out.setflags(write=False)
    return out



def rgb2gray_f32(x):
    """cv2.cvtColor(x, COLOR_RGB2GRAY) for float32 RGB, bit-identical to OpenCV's evaluation."""
    return fma32(x[..., 2], _F32(0.114), fma32(x[..., 0], _F32(0.299), x[..., 1] * _F32(0.587)))
