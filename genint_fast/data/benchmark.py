"""The built-in biased-digits benchmark's names, splits and sizes (`genint_fast.data.digits`
builds it). Nothing heavy is imported here, so that `genint-fast --help` reads these values
instead of copies."""
from __future__ import annotations

VARIANTS = ("colored", "double-colored", "wildlife", "cmnist", "hue", "rotation")
# Earlier names still accepted (one release): canonical_variant() maps them.
VARIANT_ALIASES = {"textured": "wildlife"}
SHAPE_SOURCES = ("mnist", "sklearn")
# The CGN paper trains at full correlation; other values stay available everywhere.
DEFAULT_RHO = 1.0
# "val": a validation split drawn from the training distribution (val pool, rho) for choosing
# settings; "val-ood": the same pool at the test-ood distribution, for DomainBed's oracle
# (test-domain) selection only. New splits come last so the others' random streams are unchanged.
SPLITS = ("train", "test-id", "test-ood", "val", "val-ood")
# What an export writes unless told otherwise.
EXPORT_SPLITS = SPLITS[:4]
# The variants whose nuisances follow the class with probability rho (cmnist has environments).
RHO_VARIANTS = ("colored", "double-colored", "wildlife", "hue", "rotation")
# The variants whose nuisance is a continuous value (BiasedDigits.nuisance_value), drawn around a
# class-specific mean: GenInt's premise of a nuisance that varies within each class.
CONTINUOUS_VARIANTS = ("hue", "rotation")
NUM_CLASSES = 10          # digit classes (every variant but cmnist labels by them)
# DomainBed's ColoredMNIST: colour-flip probability per environment (two training, one test)
# and the label noise.
CMNIST_ENVIRONMENTS = (0.1, 0.2, 0.9)
CMNIST_LABEL_NOISE = 0.25
CMNIST_CLASSES = ("0-4", "5-9")
SIZE = 32
DEFAULT_SIZES = {"train": 10000, "test-id": 2000, "test-ood": 2000, "val": 2000, "val-ood": 2000}


def canonical_variant(variant: str) -> str:
    """The variant's current name ("textured" -> "wildlife"); unknown names pass through."""
    return VARIANT_ALIASES.get(variant, variant)
