"""The checks of TrainConfig.validate, in the order they run (the first bad key stops it with one
sentence). Kept apart from the config's definition, which `genint-fast train --help` reads."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import (_AMP, GENERATOR_MODES, IMPLEMENTED_MODES, MODE_STREAMS, MODELS, MODES,
                     NORMALIZATIONS, TRANSFER_MODES, _check_generator_spec, parse_data_spec)


def _normalise_sources(cfg, bad) -> None:
    """One spelling of an image folder (a bare DIR becomes folder:DIR) for every later check."""
    # one spelling of an image folder (a bare DIR becomes folder:DIR) for every check below;
    # whether it exists is checked after the mode checks, as before
    for key in ("data", "val_data"):
        value = getattr(cfg, key)
        if isinstance(value, str) and value.strip() and not value.startswith("digits"):
            from ..data.sources import parse_source

            setattr(cfg, key, str(parse_source(value, flag=key, must_exist=False)))


def _check_types(cfg, bad) -> None:
    """Every field has its declared type (null only where the field allows it)."""
    for f in dataclasses.fields(cfg):
        name, v = f.name, getattr(cfg, f.name)
        t = str(f.type)
        optional = t.endswith(" | None")
        t = t.removesuffix(" | None")
        if v is None:
            if optional:
                continue
            bad(name, "must not be null")
        if t == "int" and (not isinstance(v, int) or isinstance(v, bool)):
            bad(name, f"must be an integer{' or null' if optional else ''}, got {v!r}")
        if t == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                bad(name, f"must be a number{' or null' if optional else ''}, got {v!r}")
            setattr(cfg, name, float(v))
        if t == "bool" and not isinstance(v, bool):
            bad(name, f"must be true or false, got {v!r}")
        if t == "str" and not isinstance(v, str):
            bad(name, f"must be a string{' or null' if optional else ''}, got {v!r}")
        if t == "list" and not isinstance(v, list):
            bad(name, f"must be a list, got {v!r}")
        if t == "dict" and not isinstance(v, dict):
            bad(name, f"must be a mapping, got {v!r}")


def _check_modes_and_streams(cfg, bad) -> None:
    """The mode, normalisation, intervention settings and the CGN stream."""
    if cfg.mode not in MODES:
        bad("mode", f"must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.mode not in IMPLEMENTED_MODES:
        bad("mode", f"{cfg.mode!r} is not implemented yet; use one of "
                    f"{', '.join(IMPLEMENTED_MODES)}")
    if cfg.normalize not in ("auto", *NORMALIZATIONS):
        bad("normalize", f"must be auto, {' or '.join(NORMALIZATIONS)}, got "
                         f"{cfg.normalize!r}")
    if cfg.intervention_style not in ("multi", "one"):
        bad("intervention_style", f'must be "multi" or "one", got '
                                  f'{cfg.intervention_style!r}')
    if cfg.step_ranges not in (None, "reference"):
        bad("step_ranges", f'must be null or "reference", got {cfg.step_ranges!r}')
    if cfg.step_ranges == "reference" and cfg.top_k > 60:
        bad("step_ranges", f"reference covers 60 directions; top_k is {cfg.top_k}")
    if cfg.step_ranges == "reference" and cfg.intervention_mode != "set":
        bad("step_ranges", "reference ranges are set-mode latent units; add "
            "intervention_mode=set (in add mode they would be scaled by sigma again)")
    if cfg.control not in ("none", "random-directions", "matched-norm"):
        bad("control", f'must be "none", "random-directions" or "matched-norm", got '
                       f'{cfg.control!r}')
    if cfg.control != "none" and MODE_STREAMS[cfg.mode].sampler != "intervened":
        bad("control", f"applies to the genint modes only, not {cfg.mode}")
    if cfg.heads not in ("single", "ensemble"):
        bad("heads", f'must be "single" or "ensemble", got {cfg.heads!r}')
    if MODE_STREAMS[cfg.mode].counterfactual and not cfg.cgn:
        bad("cgn", f"must name a `genint-fast cgn` checkpoint in mode {cfg.mode}")
    if cfg.cgn is not None:
        if not Path(cfg.cgn).is_file():
            bad("cgn", f"must be null or an existing `genint-fast cgn` checkpoint file, got "
                       f"{cfg.cgn!r}")
        if cfg.mode == "mixup":
            bad("cgn", "cannot be combined with mode mixup (mixup mixes the real stream "
                       "only); use mode real+cgn")
        if cfg.cgn_labels not in ("uniform", "permute"):
            bad("cgn_labels", f'must be "uniform" or "permute", got {cfg.cgn_labels!r}')
        if cfg.cgn_batch_size < 1 or cfg.cgn_per_mask < 1:
            bad("cgn_batch_size/cgn_per_mask", "must be >= 1")
        if cfg.cgn_set < 0 or (0 < cfg.cgn_set < cfg.cgn_batch_size):
            bad("cgn_set", f"must be 0 (streamed) or at least cgn_batch_size "
                           f"({cfg.cgn_batch_size}), got {cfg.cgn_set}")
    elif cfg.cgn_set:
        bad("cgn_set", "needs a counterfactual stream (set cgn=CKPT)")
    if cfg.lambda_cgn is not None and cfg.lambda_cgn < 0:
        bad("lambda_cgn", f"must be null or a number >= 0, got {cfg.lambda_cgn!r}")
    if cfg.heads == "ensemble" and cfg.cgn is None:
        bad("heads", "ensemble needs a counterfactual stream (set cgn=CKPT): its texture "
                     "and background heads learn from counterfactual labels only")


def _check_baselines_and_selection(cfg, bad) -> None:
    """The model, the group baselines (groupdro, jtt, dfr) and model selection."""
    if cfg.model not in MODELS:
        bad("model", f"must be one of {', '.join(MODELS)}, got {cfg.model!r}")
    if cfg.mode == "groupdro" and cfg.data.startswith("folder:"):
        bad("mode", "groupdro needs group labels, which the built-in digits carry (class x "
                    "stroke colour id) and image folders do not; use data=digits:<variant>")
    if cfg.mode == "groupdro" and cfg.dro_eta <= 0:
        bad("dro_eta", f"must be > 0, got {cfg.dro_eta}")
    if cfg.mode == "jtt" and cfg.data.startswith("folder:"):
        bad("mode", "jtt runs on in-memory data (data=digits:<variant>) for now; image "
                    "folders are not supported yet")
    if cfg.mode == "jtt" and (cfg.jtt_id_epochs <= 0 or cfg.jtt_upweight < 1):
        bad("jtt_id_epochs/jtt_upweight", f"must be > 0 / >= 1, got {cfg.jtt_id_epochs} / "
                                          f"{cfg.jtt_upweight}")
    if cfg.mode == "dfr" and (cfg.init_weights is None or cfg.data.startswith("folder:")):
        bad("mode", "dfr retrains the last layer of a trained model on the built-in digits' "
                    "validation split: give init_weights=<an erm checkpoint> and "
                    "data=digits:<variant>")
    if cfg.mode == "dfr" and cfg.dfr_retrains < 1:
        bad("dfr_retrains", f"must be >= 1, got {cfg.dfr_retrains}")
    if cfg.select not in ("last", "val", "oracle"):
        bad("select", f'must be "last", "val" or "oracle", got {cfg.select!r}')
    if cfg.val_every < 0 or cfg.val_size < 1:
        bad("val_every/val_size", "must be >= 0 / >= 1")
    if cfg.val_data is not None and not cfg.val_data.startswith("folder:"):
        bad("val_data", f"must be null or folder:DIR, got {cfg.val_data!r}")
    if cfg.select == "oracle" and cfg.data.startswith("folder:"):
        bad("select", "oracle selects on the built-in digits' val-ood split; on an image "
                      "folder give select=val with val_data=folder:DIR of test-domain "
                      "images and report it as the oracle")
    if (cfg.select == "val" and cfg.data.startswith("folder:")
            and cfg.val_data is None):
        bad("val_data", "is needed for select=val on an image folder: give "
                        "val_data=folder:DIR with validation images of the training "
                        "distribution")


def _check_training(cfg, bad) -> None:
    """Optimiser, forward, producer, precision and the numeric ranges of training."""
    if cfg.optimizer not in ("sgd", "adadelta"):
        bad("optimizer", f'must be "sgd" or "adadelta", got {cfg.optimizer!r}')
    if cfg.forward not in ("concat", "separate"):
        bad("forward", f'must be "concat" or "separate", got {cfg.forward!r}')
    if cfg.producer not in ("thread", "inline"):
        bad("producer", f'must be "thread" or "inline", got {cfg.producer!r}')
    if cfg.amp not in _AMP:
        bad("amp", f"must be one of {', '.join(_AMP)}, got {cfg.amp!r}")
    if cfg.intervention_mode not in ("add", "set"):
        bad("intervention_mode", f'must be "add" or "set", got {cfg.intervention_mode!r}')
    for key in ("batch_size", "steps", "checkpoint_every", "log_every", "queue_size",
                "data_size", "num_directions", "top_k", "m", "eval_size", "image_size",
                "per_latent"):
        if getattr(cfg, key) < 1:
            bad(key, f"must be >= 1, got {getattr(cfg, key)}")
    if cfg.num_classes is not None and cfg.num_classes < 2:
        bad("num_classes", f"must be null (from the data) or >= 2, got {cfg.num_classes}")
    if cfg.epochs is not None and not cfg.epochs > 0:
        bad("epochs", f"must be null (use steps) or > 0, got {cfg.epochs}")
    if cfg.gen_batch_size < 0:
        bad("gen_batch_size", f"must be >= 0, got {cfg.gen_batch_size}")
    if cfg.mode in GENERATOR_MODES and cfg.gen_batch_size < 1:
        bad("gen_batch_size", f"must be >= 1 in mode {cfg.mode}")
    for key in ("lambda1", "lambda2", "weight_decay", "momentum", "scale"):
        if getattr(cfg, key) < 0:
            bad(key, f"must be >= 0, got {getattr(cfg, key)}")
    if cfg.lr <= 0:
        bad("lr", f"must be > 0, got {cfg.lr}")
    if not 0 < cfg.truncation <= 1:
        bad("truncation", f"must be in (0, 1], got {cfg.truncation}")


def _check_transfer_and_generators(cfg, bad) -> None:
    """Style transfer, augmentation, directions, files, generator, device, data."""
    if cfg.mode in TRANSFER_MODES:
        if cfg.transfer_batch_size < 1:
            bad("transfer_batch_size", f"must be >= 1 in mode {cfg.mode}")
        if cfg.lambda2 <= 0:
            bad("lambda2", f"must be > 0 in mode {cfg.mode} (it weights the transferred "
                           f"stream)")
    ts = cfg.transfer_steps
    if (len(ts) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in ts)
            or not 1 <= ts[0] <= ts[1]):
        bad("transfer_steps", f"must be [lo, hi] integers with 1 <= lo <= hi, got {ts!r}")
    if cfg.transfer_optimizer not in ("lbfgs", "adam"):
        bad("transfer_optimizer", f'must be "lbfgs" or "adam", got {cfg.transfer_optimizer!r}')
    if cfg.transfer_kernel not in ("linear", "poly2", "gaussian", "bn"):
        bad("transfer_kernel", f"must be linear, poly2, gaussian or bn, got "
                               f"{cfg.transfer_kernel!r}")
    from ..feature_spec import parse_feature_spec

    try:    # weight files are checked only where a mode reads them
        parse_feature_spec(cfg.transfer_features, flag="transfer_features",
                           check_files=cfg.mode in TRANSFER_MODES)
    except ValueError as exc:
        bad("transfer_features", str(exc).removeprefix("transfer_features "))
    if cfg.autoaugment_policy not in ("imagenet", "cifar10", "svhn"):
        bad("autoaugment_policy", f"must be imagenet, cifar10 or svhn, got "
                                  f"{cfg.autoaugment_policy!r}")
    if cfg.mixup_alpha <= 0:
        bad("mixup_alpha", f"must be > 0, got {cfg.mixup_alpha}")
    if cfg.lr_step_epochs <= 0 or not 0 < cfg.lr_gamma <= 1:
        bad("lr_step_epochs/lr_gamma", "need lr_step_epochs > 0 and 0 < lr_gamma <= 1")
    if cfg.m > cfg.top_k or cfg.top_k > cfg.num_directions:
        bad("m/top_k", f"need m <= top_k <= num_directions, got m={cfg.m}, "
                       f"top_k={cfg.top_k}, num_directions={cfg.num_directions}")
    if cfg.intervention_style == "one" and cfg.per_latent > cfg.top_k:
        bad("per_latent", f"must be <= top_k={cfg.top_k} (distinct directions per latent), "
                          f"got {cfg.per_latent}")
    if cfg.threads is not None and cfg.threads < 1:
        bad("threads", f"must be null or an integer >= 1, got {cfg.threads!r}")
    if cfg.init_weights is not None and not Path(cfg.init_weights).is_file():
        bad("init_weights", f"must be null or an existing file, got {cfg.init_weights!r}")
    if cfg.mode in GENERATOR_MODES:
        _check_generator_spec(cfg.generator, bad)
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        bad("device", f'must be "cpu" or "cuda[:N]", got {cfg.device!r}')
    parse_data_spec(cfg.data)
    if cfg.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            bad("tensorboard", "is true but the tensorboard package is missing; "
                               "pip install tensorboard, or set tensorboard=false")


CHECKS = (_normalise_sources, _check_types, _check_modes_and_streams,
          _check_baselines_and_selection, _check_training, _check_transfer_and_generators)
