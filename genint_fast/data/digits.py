"""Built-in biased-digits benchmark (SPEC section 10; the CGN paper's MNIST variants).

Real handwritten MNIST digits are turned into binary stroke masks at 32x32 and painted with
nuisances that are tied to the class with probability rho (default 1.0, as the CGN paper):

- ``colored``: one stroke colour per image, the class colour plus Gaussian jitter of variance
  0.02 per channel (the CGN reference's colored MNIST), black background.
- ``double-colored``: stroke colour and background colour each follow the class (jitter sd 0.01,
  as the reference); strokes bright, backgrounds dark, so a digit stays visible when both are
  drawn at random.
- ``wildlife``: stroke texture and background texture each follow the class; textures are random
  crops of the photos and textures bundled with scikit-image (the reference used DTD textures,
  which cannot be downloaded here). ``textured`` is accepted as its old name.
- ``cmnist``: DomainBed's ColoredMNIST (Arjovsky et al.'s IRM data) on the same digits, with two
  classes: label 0 for digits 0-4, 1 for 5-9, flipped with probability 0.25; the stroke is red
  (colour id 0) or green (id 1), equal to the noisy label except with probability 0.1 or 0.2 in
  the two training environments and 0.9 in the test environment (DomainBed's "+90%", "+80%" and
  "-90%"); black background, no jitter, in three channels (blue empty) at 32x32.  ``train``,
  ``val`` and ``test-id`` draw half their images from each training environment, ``test-ood`` is
  the -90% environment; ``environment`` records each image's.  rho does not apply (the
  environments fix the colour-label agreement: 85% in training, 10% in the test environment);
  rho = 0 gives an instance whose colours are independent of the label (for measuring readers).
- ``hue``: a continuous nuisance that varies within each class (GenInt's premise): the stroke's
  hue is drawn around its class's mean hue c / 10 with Gaussian spread 0.03 (saturation and
  value 1, black background), so neighbouring classes' hues overlap; with probability 1 - rho,
  and always in test-ood, the hue is uniform on the colour circle. It stands for the nuisances
  that vary within ImageNet classes in the same way for every class (colour shifts, viewpoint,
  zoom). ``nuisance_value`` holds each hue; the nuisance id is its bin (the nearest class mean),
  which the group and reader measures use.
- ``rotation``: a geometric nuisance that varies within each class, GenInt's viewpoint / pose:
  the white digit (black background) is rotated by an angle drawn around its class's mean angle
  -45 + 10 c degrees with Gaussian spread 4 degrees (on top of the writer's own slant), so
  neighbouring classes' angles overlap; with probability 1 - rho, and always in test-ood, the
  angle is uniform on [-50, 50] degrees. ``nuisance_value`` holds each angle (degrees,
  counter-clockwise as displayed); the nuisance id is the nearest class mean.
  DomainBed builds it from 70000 digits at 14x14 in two channels; here 5000 digits make it, each
  shown many times under fresh colour and label draws.

For every nuisance slot of every sample an independent draw decides: with probability rho the
nuisance id is the class, otherwise it is drawn uniformly over all 10 ids (so it still equals the
class 1/10 of the time: P(nuisance == class) = rho + (1 - rho) / 10).  The "follows" flags record
the first draw.  Splits: ``train`` and ``val`` (a validation split from the training
distribution) use rho, ``test-id`` too, ``test-ood`` uses rho = 0.  Each class's digits are split
once (seeded) into disjoint shape pools: 60% train, 10% val, 30% test (test-id and test-ood), so
validation and test shapes are unseen in training (the shapes and their pools:
`genint_fast.data.shapes`; the export as an image folder: `genint_fast.data.export`).
Everything is generated with numpy's PCG64 from the seed: the same arguments give
byte-identical tensors and PNG files.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

# The benchmark's names, splits and sizes live in .benchmark (torch-free); they stay importable
# from here, where most code reads them.
from .benchmark import (CMNIST_CLASSES, CMNIST_ENVIRONMENTS, CMNIST_LABEL_NOISE,  # noqa: F401
                        CONTINUOUS_VARIANTS,
                        DEFAULT_RHO, DEFAULT_SIZES, EXPORT_SPLITS, NUM_CLASSES, RHO_VARIANTS,
                        SHAPE_SOURCES, SIZE, SPLITS, VARIANT_ALIASES, VARIANTS, canonical_variant)
from .shapes import digit_masks, place_masks, pool_of, shape_pools

CMNIST_PALETTE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])   # colour id 0 red, 1 green
# Colour jitter per channel in [0, 1] units: Gaussian with the CGN reference's standard
# deviations for the MNIST shapes (variance 0.02 for colored strokes, sd 0.01 double-colored);
# uniform +- for the sklearn shapes (the earlier benchmark).
COLOR_SD = 0.02 ** 0.5
# hue: the stroke hue's spread around its class's mean hue c / 10 (neighbouring means are 0.1
# apart, so the classes' hue ranges overlap: the nearest mean names the class ~90% of the time)
HUE_SD = 0.03
# rotation: class c's mean angle is ROTATION_MEANS[c] (degrees, 10 apart), spread ROTATION_SD;
# the angle of a digit not tied to its class (and of every test-ood digit) is uniform on
# +- ROTATION_RANGE.
ROTATION_MEANS = np.linspace(-45.0, 45.0, NUM_CLASSES)
ROTATION_SD = 4.0
ROTATION_RANGE = 50.0
DOUBLE_COLOR_SD = 0.01
COLOR_JITTER = 0.05
BACKGROUND_JITTER = 0.02

# scikit-image images used as textures (all bundled with the package, none needs pooch).
STROKE_TEXTURES = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry",
                   "colorwheel", "brick", "grass", "gravel", "coins", "text")
BACKGROUND_TEXTURES = ("chelsea", "retina", "rocket", "stereo_motorcycle", "camera", "moon",
                       "cell", "clock", "checkerboard", "page")
_TEXTURE_SIDE = 96  # textures are resized so that their shorter side is this many pixels


def _hsv_palette(hue_offset: float, saturation: float, value: float) -> np.ndarray:
    from skimage.color import hsv2rgb

    hsv = np.stack([(np.arange(NUM_CLASSES) + hue_offset) / NUM_CLASSES,
                    np.full(NUM_CLASSES, saturation), np.full(NUM_CLASSES, value)], axis=1)
    return hsv2rgb(hsv[None])[0].astype(np.float32)


# Stroke colours are bright and background colours dark, so a digit is always visible even when
# both nuisances are drawn at random.
STROKE_PALETTE = _hsv_palette(0.0, 1.0, 1.0)
BACKGROUND_PALETTE = _hsv_palette(0.5, 0.8, 0.4)


@dataclass
class BiasedDigits:
    """One split of the benchmark, as tensors.

    images:    uint8 (N, 3, 32, 32), RGB
    labels:    int64 (N,), the digit class
    nuisance:  int64 (N, 2), nuisance ids [stroke, background]; background is -1 for `colored`
    follows:   bool (N, 2), whether the nuisance was tied to the class by the rho draw
    source:    int64 (N,), index of the digit (in the `shapes` source) the shape comes from
    environment: int64 (N,), cmnist's environment index into CMNIST_ENVIRONMENTS (None for the
               other variants)
    nuisance_value: float32 (N,), the continuous nuisance: the hue variant's stroke hue in [0, 1),
               the rotation variant's angle in degrees (None for the other variants)
    """

    images: torch.Tensor
    labels: torch.Tensor
    nuisance: torch.Tensor
    follows: torch.Tensor
    source: torch.Tensor
    variant: str
    split: str
    rho: float
    seed: int
    classes: list = field(default_factory=lambda: [str(c) for c in range(NUM_CLASSES)])
    shapes: str = "mnist"
    environment: torch.Tensor | None = None
    nuisance_value: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i].float().div_(255), self.labels[i]

    def float_images(self) -> torch.Tensor:
        """Images as float32 in [0, 1], (N, 3, 32, 32)."""
        return self.images.float().div_(255)

    def tensor_dataset(self) -> torch.utils.data.TensorDataset:
        """(float image in [0, 1], label) pairs for a torch DataLoader."""
        return torch.utils.data.TensorDataset(self.float_images(), self.labels)


def num_classes_of(variant: str) -> int:
    """How many classes a variant labels its images with (2 for cmnist, 10 otherwise)."""
    return len(CMNIST_CLASSES) if canonical_variant(variant) == "cmnist" else NUM_CLASSES


def class_names_of(variant: str) -> list:
    """The class names (folder names on export) of a variant."""
    return (list(CMNIST_CLASSES) if canonical_variant(variant) == "cmnist"
            else [str(c) for c in range(NUM_CLASSES)])


def _check(variant: str, split: str, rho: float, shapes: str = "mnist") -> str:
    variant = canonical_variant(variant)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if not (isinstance(rho, (int, float)) and 0.0 <= float(rho) <= 1.0):
        raise ValueError(f"rho must be a number in [0, 1], got {rho!r}")
    if shapes not in SHAPE_SOURCES:
        raise ValueError(f"unknown digit shapes {shapes!r}; choose from {', '.join(SHAPE_SOURCES)}")
    if variant == "cmnist" and float(rho) not in (DEFAULT_RHO, 0.0):
        raise ValueError(f"cmnist has no rho (its environments fix the colour-label agreement: "
                         f"flip rates {CMNIST_ENVIRONMENTS}); leave rho at {DEFAULT_RHO:g} (or 0 "
                         f"for colours independent of the label)")
    return variant


def _load_skimage(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


@functools.lru_cache(maxsize=2)
def _textures(names: tuple) -> list[np.ndarray]:
    """Each named image as float32 (H, W, 3) in [0, 1], its shorter side resized to 96 px."""
    from skimage.transform import resize

    out = []
    for name in names:
        img = _load_skimage(name)
        h, w = img.shape[:2]
        s = _TEXTURE_SIDE / min(h, w)
        shape = (max(SIZE, round(h * s)), max(SIZE, round(w * s)))
        out.append(resize(img, shape, anti_aliasing=True, preserve_range=True)
                   .astype(np.float32) / 255.0)
    return out


def _texture_crops(names: tuple, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 32x32 crop of texture ids[i] for every sample: (N, 32, 32, 3) float32."""
    tex = _textures(names)
    out = np.empty((ids.size, SIZE, SIZE, 3), np.float32)
    # Draw all crop corners up front (one stream, independent of grouping) then gather per texture.
    u = rng.random((ids.size, 2))
    ar = np.arange(SIZE)
    for t in range(len(tex)):
        sel = np.flatnonzero(ids == t)
        if sel.size == 0:
            continue
        h, w = tex[t].shape[:2]
        y0 = (u[sel, 0] * (h - SIZE + 1)).astype(np.int64)
        x0 = (u[sel, 1] * (w - SIZE + 1)).astype(np.int64)
        out[sel] = tex[t][(y0[:, None] + ar)[:, :, None], (x0[:, None] + ar)[:, None, :]]
    return out


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """(N,) hues in [0, 1) -> (N, 3) RGB at full saturation and value."""
    h6 = 6.0 * np.asarray(hue, np.float64)[:, None]
    return np.clip(np.abs(h6 - np.array([3.0, 2.0, 4.0])) * np.array([1.0, -1.0, -1.0])
                   + np.array([-1.0, 2.0, 2.0]), 0.0, 1.0)


def hue_bin(hue: np.ndarray) -> np.ndarray:
    """The class whose mean hue (c / 10) is nearest on the colour circle: the hue's id."""
    return (np.rint(np.asarray(hue) * NUM_CLASSES).astype(np.int64) % NUM_CLASSES)


def angle_bin(angle: np.ndarray) -> np.ndarray:
    """The class whose mean angle (ROTATION_MEANS) is nearest: the rotation variant's id."""
    step = ROTATION_MEANS[1] - ROTATION_MEANS[0]
    return np.clip(np.rint((np.asarray(angle) - ROTATION_MEANS[0]) / step), 0,
                   NUM_CLASSES - 1).astype(np.int64)


def rotate_masks(mask: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(n, H, W) masks rotated about the image centre by `angle` degrees (counter-clockwise as
    displayed, rows downward), bilinear, zeros outside."""
    a = torch.from_numpy(np.deg2rad(np.asarray(angle, np.float64))).float()
    c, s = torch.cos(a), torch.sin(a)
    # affine_grid maps output (x right, y down) to input coordinates: input = R(angle) output,
    # with y pointing down, so a positive angle turns the image counter-clockwise on screen.
    theta = torch.stack([torch.stack([c, -s, torch.zeros_like(c)], 1),
                         torch.stack([s, c, torch.zeros_like(c)], 1)], 1)
    x = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[:, None]
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out[:, 0].numpy()


def _draw_nuisance(labels: np.ndarray, rho: float, rng: np.random.Generator):
    follows = rng.random(labels.size) < rho
    random_ids = rng.integers(0, NUM_CLASSES, labels.size)
    return np.where(follows, labels, random_ids), follows


def make_biased_digits(variant: str = "colored", split: str = "train",
                       rho: float = DEFAULT_RHO, seed: int = 0, n: int | None = None, *,
                       shapes: str = "mnist") -> BiasedDigits:
    """Build one split of the biased-digits benchmark as tensors (see the module docstring).

    n: number of samples (default 10000 for train, 2000 for the others); digit classes are
    balanced (counts differ by at most one; cmnist's noisy binary labels nearly so).  test-ood
    ignores rho (it is always 0).  shapes: "mnist"
    (real digits, default) or "sklearn" (the 8x8 digits).
    """
    variant = _check(variant, split, rho, shapes)
    n = DEFAULT_SIZES[split] if n is None else n
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    rho_eff = 0.0 if split in ("test-ood", "val-ood") else float(rho)
    _, targets = digit_masks(shapes)
    pool = shape_pools(seed, shapes)[pool_of(split)]
    # One independent stream per (seed, variant, split).
    rng = np.random.Generator(np.random.PCG64(
        [seed, VARIANTS.index(variant), SPLITS.index(split), 0xB1A5]))

    # Balanced labels in a random order; each sample takes a random digit of its class.
    labels = rng.permutation(np.arange(n) % NUM_CLASSES)
    source = np.empty(n, np.int64)
    for c in range(NUM_CLASSES):
        sel = np.flatnonzero(labels == c)
        cand = pool[targets[pool] == c]
        source[sel] = cand[rng.integers(0, cand.size, sel.size)]
    mask = place_masks(source, rng, shapes)[..., None]  # (n, 32, 32, 1)
    if variant == "cmnist":
        return _cmnist(labels, source, mask, rng, split=split, seed=seed, shapes=shapes,
                       decorrelated=float(rho) == 0.0)

    def colour(palette, ids, gaussian_sd, uniform_jitter):
        if shapes == "mnist":
            c = palette[ids] + rng.normal(0.0, gaussian_sd, (n, 3))
        else:
            c = palette[ids] + rng.uniform(-uniform_jitter, uniform_jitter, (n, 3))
        return np.clip(c, 0.0, 1.0)[:, None, None, :]

    stroke_id, stroke_follows = _draw_nuisance(labels, rho_eff, rng)
    value = None   # the continuous nuisance (hue, angle)
    if variant == "colored":
        bg_id = np.full(n, -1, np.int64)
        bg_follows = np.zeros(n, bool)
        img = mask * colour(STROKE_PALETTE, stroke_id, COLOR_SD, COLOR_JITTER)
    elif variant == "hue":
        bg_id = np.full(n, -1, np.int64)
        bg_follows = np.zeros(n, bool)
        around = labels / NUM_CLASSES + rng.normal(0.0, HUE_SD, n)
        value = np.where(stroke_follows, around, rng.random(n)) % 1.0
        stroke_id = hue_bin(value)
        img = mask * hue_to_rgb(value)[:, None, None, :]
    elif variant == "rotation":
        bg_id = np.full(n, -1, np.int64)
        bg_follows = np.zeros(n, bool)
        around = ROTATION_MEANS[labels] + rng.normal(0.0, ROTATION_SD, n)
        value = np.where(stroke_follows, around,  # the angle
                         rng.uniform(-ROTATION_RANGE, ROTATION_RANGE, n))
        stroke_id = angle_bin(value)
        img = np.repeat(rotate_masks(mask[..., 0], value)[..., None], 3, axis=3)
    elif variant == "double-colored":
        bg_id, bg_follows = _draw_nuisance(labels, rho_eff, rng)
        fg = colour(STROKE_PALETTE, stroke_id, DOUBLE_COLOR_SD, COLOR_JITTER)
        bg = colour(BACKGROUND_PALETTE, bg_id, DOUBLE_COLOR_SD, BACKGROUND_JITTER)
        img = mask * fg + (1.0 - mask) * bg
    else:  # wildlife
        bg_id, bg_follows = _draw_nuisance(labels, rho_eff, rng)
        fg = 0.5 + 0.5 * _texture_crops(STROKE_TEXTURES, stroke_id, rng)    # bright strokes
        bg = 0.45 * _texture_crops(BACKGROUND_TEXTURES, bg_id, rng)         # dark backgrounds
        img = mask * fg + (1.0 - mask) * bg

    img = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 3, 1, 2)
    return BiasedDigits(
        images=torch.from_numpy(np.ascontiguousarray(img)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        nuisance=torch.from_numpy(np.stack([stroke_id, bg_id], 1).astype(np.int64)),
        follows=torch.from_numpy(np.stack([stroke_follows, bg_follows], 1)),
        source=torch.from_numpy(source),
        variant=variant, split=split, rho=rho_eff, seed=seed, shapes=shapes,
        nuisance_value=None if value is None else torch.from_numpy(value.astype(np.float32)),
    )


def _cmnist(digits, source, mask, rng, *, split, seed, shapes, decorrelated) -> BiasedDigits:
    """DomainBed's ColoredMNIST labels and colours for the digit classes `digits` whose stroke
    masks are `mask` (n, 32, 32, 1); see the module docstring. decorrelated: every split's colour
    independent of the label (flip probability 0.5, environment -1), for measuring readers."""
    n = digits.size
    if decorrelated:
        env = np.full(n, -1, np.int64)
    elif split in ("test-ood", "val-ood"):
        env = np.full(n, len(CMNIST_ENVIRONMENTS) - 1, np.int64)
    else:                                   # half from each training environment
        env = rng.permutation(np.arange(n) % (len(CMNIST_ENVIRONMENTS) - 1)).astype(np.int64)
    labels = (digits >= 5).astype(np.int64)
    labels ^= (rng.random(n) < CMNIST_LABEL_NOISE)
    flips = np.where(env >= 0, np.asarray(CMNIST_ENVIRONMENTS)[env], 0.5)
    agrees = rng.random(n) >= flips
    colour = np.where(agrees, labels, 1 - labels)
    img = mask * CMNIST_PALETTE[colour][:, None, None, :]
    img = np.rint(img * 255.0).astype(np.uint8).transpose(0, 3, 1, 2)
    return BiasedDigits(
        images=torch.from_numpy(np.ascontiguousarray(img)),
        labels=torch.from_numpy(labels),
        nuisance=torch.from_numpy(np.stack([colour, np.full(n, -1)], 1).astype(np.int64)),
        follows=torch.from_numpy(np.stack([agrees, np.zeros(n, bool)], 1)),
        source=torch.from_numpy(source),
        variant="cmnist", split=split, rho=round(float(1.0 - flips.mean()), 6), seed=seed,
        classes=list(CMNIST_CLASSES), shapes=shapes, environment=torch.from_numpy(env))


# Moved to genint_fast.data.shapes and genint_fast.data.export; the old names stay importable
# from here for one release.
_MOVED = {"mnist_file": "shapes", "mnist_digits": "shapes", "foreground_share": "shapes",
          "_digit_masks": "shapes", "save_image_folder": "export",
          "export_biased_digits": "export"}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        module = importlib.import_module(f"{__package__}.{_MOVED[name]}")
        return getattr(module, name.lstrip("_") if name == "_digit_masks" else name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
