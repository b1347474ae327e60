"""ImageNet-C scoring: corruption error (CE), mCE and relative mCE (Hendrycks & Dietterich 2019).

Inputs are top-1 errors in [0, 1]: for each corruption, the five errors at severities 1..5
(fewer are accepted against a per-severity reference at the same severities; such a score is
marked incomplete). Scores come back in percent. CE_c = sum_s E(c,s) / sum_s E_ref(c,s); relative
CE_c = sum_s (E(c,s) - E_clean) / sum_s (E_ref(c,s) - E_ref_clean). The reference is AlexNet
unless another is given (for small images or a custom corruption set, pass your own
baseline checkpoint's errors).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "ALEXNET_ERR", "ALEXNET_CLEAN_ERR",
    "CorruptionScore", "corruption_errors", "mce", "relative_mce", "relative_mce_where_defined",
]

SEVERITIES = 5

# The 15 benchmark corruptions, in the benchmark's order. mCE averages over these only.
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
# The four held-out corruptions shipped with ImageNet-C ("extra"); scored when a reference has
# them, never part of the mCE.
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

# AlexNet top-1 error per corruption, averaged over the 5 severities (so its per-severity sum is
# 5x this). Same numbers as ALEXNET_ERR in google-research/augmix imagenet.py (which credits
# hendrycks/robustness) and as the AlexNet table of mmcls's ImageNet-C metric.
ALEXNET_ERR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
# AlexNet clean top-1 error for relative mCE. hendrycks/robustness ImageNet-C/test.py scores
# torchvision's alexnet-owt-4df8aa71.pth, whose documented top-1 is 56.522% (torchvision docs,
# AlexNet_Weights.IMAGENET1K_V1): error 0.43478 -> 0.4348. Older torchvision docs listed the same
# checkpoint at 43.45% top-1 error; the two differ by 0.03 points.
ALEXNET_CLEAN_ERR = 0.4348

_KNOWN = CORRUPTIONS + EXTRA_CORRUPTIONS


@dataclass(frozen=True)
class CorruptionScore:
    """Per-corruption (relative) CE in percent and their mean over the benchmark corruptions
    present. `complete` is True only when all 15 benchmark corruptions were scored at all 5
    severities; otherwise the mean is a partial one and `label` says what it covers."""

    kind: str                          # "mCE" or "relative mCE"
    per_corruption: dict[str, float]   # CE in %, benchmark order, extras last
    mce: float                         # mean over `corruptions`, in %
    corruptions: tuple[str, ...]       # the benchmark corruptions averaged
    severities: int                    # severities summed per corruption (5 in the benchmark)
    complete: bool

    @property
    def label(self) -> str:
        if self.complete:
            return self.kind
        parts = []
        if len(self.corruptions) < len(CORRUPTIONS):
            parts.append(f"{len(self.corruptions)} of {len(CORRUPTIONS)} corruptions")
        if self.severities < SEVERITIES:
            parts.append(f"{self.severities} of {SEVERITIES} severities")
        return f"{self.kind} over {', '.join(parts)}"


def _error(value, where):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is {value!r}; give top-1 errors as numbers in [0, 1].") from None
    if not (0.0 <= v <= 1.0):  # also rejects NaN
        raise ValueError(f"{where} is {v}; give top-1 errors as fractions in [0, 1], not percent.")
    return v


def _length(seq):
    """len(seq), or None for a scalar (numbers, 0-d arrays and tensors) or a string."""
    if isinstance(seq, (str, bytes)):
        return None
    try:
        return len(seq)
    except TypeError:
        return None


def corruption_errors(errors) -> dict[str, tuple[float, ...]]:
    """Validate a table corruption name -> top-1 errors in [0, 1], one per severity (5 in the
    benchmark: severity 1..5; every corruption must have the same number). Returns it as
    floats, ordered as the benchmark (extras last)."""
    if not isinstance(errors, Mapping) or not errors:
        raise ValueError("errors must be a non-empty mapping corruption name -> 5 top-1 errors.")
    out = {}
    for name, seq in errors.items():
        if name not in _KNOWN:
            raise ValueError(f"unknown corruption {name!r}; use the ImageNet-C folder names "
                             f"({', '.join(_KNOWN)}).")
        n = _length(seq)
        if n is None or not 1 <= n <= SEVERITIES:
            raise ValueError(f"{name} has {n or 'no'} errors; give exactly {SEVERITIES}, "
                             "one per severity 1..5.")
        out[name] = tuple(_error(e, f"{name} severity {s + 1}") for s, e in enumerate(seq))
    counts = {len(v) for v in out.values()}
    if len(counts) > 1:
        raise ValueError(f"corruptions have different numbers of severities {sorted(counts)}; "
                         f"give exactly {SEVERITIES} errors for each.")
    return {c: out[c] for c in _KNOWN if c in out}


def _reference_sums(reference, names, n):
    """Per-corruption sum over the n severities of the reference errors. An entry is either n
    per-severity errors or one number, the mean over all 5 severities (as ALEXNET_ERR), which
    only fits a table with all 5 severities."""
    if not isinstance(reference, Mapping):
        raise ValueError("reference must be a mapping corruption name -> 5 errors or their mean.")
    sums = {}
    for c in names:
        if c not in reference:
            raise ValueError(f"the reference has no error for {c!r}; give one or leave {c} out.")
        r = reference[c]
        if _length(r) is None:
            if n != SEVERITIES:
                raise ValueError(f"the reference for {c} is a mean over {SEVERITIES} severities but "
                                 f"the errors cover {n}; score all {SEVERITIES} severities or give "
                                 "per-severity reference errors.")
            sums[c] = SEVERITIES * _error(r, f"reference {c}")
        else:
            (e,) = corruption_errors({c: r}).values()
            if len(e) != n:
                raise ValueError(f"the reference has {len(e)} severities for {c} but the errors "
                                 f"have {n}; evaluate both at the same severities.")
            sums[c] = sum(e)
    return sums


def _score(kind, ratios, n):
    bench = tuple(c for c in CORRUPTIONS if c in ratios)
    if not bench:
        raise ValueError(f"no benchmark corruption was scored; an {kind} needs at least one of "
                         f"{', '.join(CORRUPTIONS)}.")
    per = {c: 100.0 * ratios[c] for c in _KNOWN if c in ratios}
    mean = sum(per[c] for c in bench) / len(bench)
    return CorruptionScore(kind, per, mean, bench, n,
                           len(bench) == len(CORRUPTIONS) and n == SEVERITIES)


def mce(errors, reference=None) -> CorruptionScore:
    """CE_c = sum_s E(c,s) / sum_s E_ref(c,s) in %, and their mean (mCE). reference None means
    AlexNet (ALEXNET_ERR, needs all 5 severities); otherwise a mapping name -> per-severity
    errors at the same severities (or their mean over all 5)."""
    errs = corruption_errors(errors)
    n = len(next(iter(errs.values())))
    ref = _reference_sums(ALEXNET_ERR if reference is None else reference, errs, n)
    ratios = {}
    for c, e in errs.items():
        if ref[c] <= 0.0:
            raise ValueError(f"the reference makes no error on {c}, so its CE is undefined; "
                             "use another reference or leave it out.")
        ratios[c] = sum(e) / ref[c]
    return _score("mCE", ratios, n)


def relative_mce(errors, clean_err, reference_errors=None,
                 reference_clean_err=None) -> CorruptionScore:
    """Relative CE_c = sum_s (E(c,s) - E_clean) / sum_s (E_ref(c,s) - E_ref_clean) in %, and their
    mean. Both reference arguments None means AlexNet (ALEXNET_ERR, ALEXNET_CLEAN_ERR); for small
    images give a baseline checkpoint's corruption errors and clean error instead."""
    if (reference_errors is None) != (reference_clean_err is None):
        raise ValueError("give both reference_errors and reference_clean_err, or neither for AlexNet.")
    if reference_errors is None:
        reference_errors, reference_clean_err = ALEXNET_ERR, ALEXNET_CLEAN_ERR
    errs = corruption_errors(errors)
    n = len(next(iter(errs.values())))
    clean = _error(clean_err, "clean_err")
    ref_clean = _error(reference_clean_err, "reference_clean_err")
    ref = _reference_sums(reference_errors, errs, n)
    ratios = {}
    for c, e in errs.items():
        denom = ref[c] - n * ref_clean
        if denom <= 1e-12:
            raise ValueError(f"the reference is not degraded by {c} (its errors do not exceed its "
                             "clean error), so the relative CE is undefined; leave that corruption "
                             "out or use another reference.")
        ratios[c] = (sum(e) - n * clean) / denom
    return _score("relative mCE", ratios, n)


def relative_mce_where_defined(errors, clean_err, reference_errors, reference_clean_err):
    """(relative mCE over the corruptions that degrade the reference, the corruptions left out).

    A corruption that does not raise the reference's error above its clean error (on 32 px
    digits: pixelate, JPEG and zoom blur leave a colour-reading classifier untouched) has no
    relative CE; it is left out and named, and the score is then marked incomplete. Raises
    ValueError when no corruption degrades the reference."""
    errs = corruption_errors(errors)
    ref = corruption_errors(reference_errors)
    ref_clean = _error(reference_clean_err, "reference_clean_err")
    keep = [c for c in errs if c in ref and sum(ref[c]) - len(ref[c]) * ref_clean > 1e-12]
    left_out = [c for c in errs if c not in keep]
    if not keep:
        raise ValueError("no corruption raises the reference's error above its clean error; "
                         "relative mCE is undefined against this reference")
    score = relative_mce({c: errs[c] for c in keep}, clean_err, {c: ref[c] for c in keep},
                         ref_clean)
    return score, left_out
