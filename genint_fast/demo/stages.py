"""The demo's stages before the classifiers: data, the GAN, its directions and intervention
scale, the measures of what interventions do, the CGN, generated-only training and the figures."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from .config import DemoConfig


def _data(cfg: DemoConfig):
    from ..data.digits import make_biased_digits

    train = make_biased_digits(cfg.variant, "train", cfg.rho, seed=cfg.data_seed,
                               n=cfg.train_size)
    test_id = make_biased_digits(cfg.variant, "test-id", cfg.rho, seed=cfg.data_seed,
                                 n=cfg.test_size)
    test_ood = make_biased_digits(cfg.variant, "test-ood", cfg.rho, seed=cfg.data_seed,
                                  n=cfg.test_size)
    return train, test_id, test_ood


def _gan(cfg: DemoConfig, train, out: Path, log):
    from ..data.digits import num_classes_of
    from ..generators import GANTrainConfig, SmallGANConfig, load_small_generator, train_gan

    path = out / "gan.pt"
    model_config = SmallGANConfig(num_classes=num_classes_of(cfg.variant),
                                  class_bn=cfg.gan_class_bn)
    if path.is_file():
        from ..generators.train_gan import read_gan_checkpoint

        try:   # a corrupt file or another kind of checkpoint: one sentence, not a traceback
            cached = read_gan_checkpoint(path).get("model_config", {})
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{exc}; delete the cached {path} and the demo trains the GAN "
                             "afresh") from None
        if SmallGANConfig(**cached).to_dict() != model_config.to_dict():
            log(f"  the cached {path} has another architecture ({cached}); training afresh")
            path.unlink()
    t0 = time.perf_counter()
    summary = train_gan(train.float_images() * 2 - 1, train.labels, path,
                        model_config=model_config,
                        train_config=GANTrainConfig(steps=cfg.gan_steps,
                                                    batch_size=cfg.gan_batch_size,
                                                    log_every=max(cfg.gan_steps // 5, 1),
                                                    checkpoint_every=250, seed=cfg.data_seed),
                        resume=True, log=log)
    summary["wall_s"] = time.perf_counter() - t0
    return path, load_small_generator(path), summary


def _corrupted_test(cfg: DemoConfig, test, log):
    """The first corruption_n test images under every corruption x severity, made once
    (genint_fast.eval.corruptions, seeded per image) and shared by every run."""
    from ..eval.corruptions import CORRUPTIONS
    from ..eval.protocols import corrupt_all

    n = min(cfg.corruption_n, int(test.labels.shape[0]))
    settings = [(c, int(s)) for c in CORRUPTIONS for s in cfg.corruption_severities]
    t0 = time.perf_counter()
    images = corrupt_all(test.images[:n], settings, seed=cfg.data_seed,
                         workers=min(2, int(cfg.threads)))
    log(f"  {len(settings)} corruption settings x {n} ID test images in "
        f"{time.perf_counter() - t0:.0f} s")
    return {"clean": test.images[:n], "labels": test.labels[:n], "images": images}


def _cgn(cfg: DemoConfig, train, out: Path, log):
    """Train (or resume) the small CGN on the training split, cached in OUT/cgn.pt; write the
    counterfactual sheet; return (path, summary with mask statistics)."""
    from ..cgn import (counterfactual_sheet, decomposition_warnings, load_cgn, mask_statistics,
                      train_cgn_checked)
    from ..cgn.presets import preset_configs
    from ..data.shapes import variant_foreground_shares
    from ..diagnostics.shape import cached_shape_reader, shape_check

    t0 = time.perf_counter()
    share, by_class = variant_foreground_shares(cfg.variant)
    reader, reader_acc = cached_shape_reader(out / "shape_reader.pt", cfg.shape_reader_steps,
                                             seed=cfg.data_seed, log=log)
    check = shape_check(reader, cfg.variant)
    if cfg.cgn_checkpoint:
        path = Path(cfg.cgn_checkpoint)
        cgn = load_cgn(path)
        log(f"  using the given CGN {path} ({cgn.steps_trained} training steps), not training one")
        summary = {"steps": cgn.steps_trained, "checkpoint": str(path), "given": True,
                   "feature_net": "(given checkpoint)"}
    else:
        path = out / "cgn.pt"
        steps = cfg.cgn_train_steps()
        mc, tc = preset_configs("default", cfg.variant, num_classes=train.num_classes,
                                train_overrides=dict(
            steps=steps, batch_size=cfg.cgn_batch_size, feature_net=cfg.cgn_feature_net,
            seed=cfg.data_seed, log_every=max(steps // 5, 1), checkpoint_every=250))
        summary = train_cgn_checked(
            train.float_images() * 2 - 1, train.labels, path, model_config=mc, train_config=tc,
            foreground_share=share, share_by_class=by_class, shape_check=check, resume=True,
            log=log)
        cgn = load_cgn(path)
    summary["wall_s"] = time.perf_counter() - t0
    if "mask" not in summary:                  # a given checkpoint: checked here
        summary["mask"] = dict(mask_statistics(cgn), shape_consistency=check(cgn))
        summary["warnings"] = decomposition_warnings(summary["mask"], share,
                                                     share_by_class=by_class)
    for w in summary["warnings"]:
        log(f"  WARNING: the decomposition failed: {w}")
    summary["shape_consistency"] = summary["mask"]["shape_consistency"]
    summary["shape_reader_accuracy"] = reader_acc
    counterfactual_sheet(cgn, out / "counterfactuals.png")
    return path, summary


def _generated_only(cfg: DemoConfig, gen, directions, tests, log) -> dict:
    """The paper's Table 4 on the demo's GAN: classifiers trained only on generated images."""
    from ..train.generated_only import generated_only

    samplers = {f"observational (t = {t:g})":
                (lambda seed, t=t: _intervention_sampler(gen, directions, replace(cfg,
                                                                                  truncation=t),
                                                         0.0, seed))
                for t in (0.5, 1.0)}
    for name, control in ((f"interventional (s = {cfg.scale:g})", "none"),
                          ("random directions (control)", "random-directions"),
                          ("matched norm (control)", "matched-norm")):
        samplers[name] = (lambda seed, c=control: _intervention_sampler(
            gen, directions, cfg, cfg.scale, seed, control=c))
    return generated_only(samplers, {"ID": tests["id"], "OOD": tests["ood"]},
                          n=cfg.generated_only, seeds=cfg.seeds,
                          steps=cfg.generated_only_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                          num_classes=gen.num_classes, log=log)


def _intervention_sampler(gen, directions, cfg, scale, seed, *, control="none"):
    from ..intervene import make_sampler

    return make_sampler(gen, directions, truncation=cfg.truncation, top_k=cfg.top_k, m=cfg.m,
                        scale=scale, mode=cfg.intervention_mode, style=cfg.intervention_style,
                        seed=seed, control=control)


def _select_scale(cfg: DemoConfig, gen, directions, log) -> dict:
    """The intervention scale with the largest causal-bound score log P(x|z) of the validation
    split (drawn from the training distribution) among cfg.scale_candidates; the test splits are
    not read. Scale 0 (observational samples) is scored for reference, not chosen."""
    from ..data.digits import make_biased_digits
    from ..diagnostics.correlation import bound_features, causal_bound_score, median_bandwidth
    from ..intervene import ObservationalSampler, draw_images

    val = make_biased_digits(cfg.variant, "val", cfg.rho, seed=cfg.data_seed,
                             n=cfg.measure_n)
    fr = bound_features(val.float_images())
    obs, _ = draw_images(ObservationalSampler(gen, truncation=cfg.truncation, seed=11),
                         cfg.measure_n)
    h = median_bandwidth(fr, bound_features(obs))
    scores = {0.0: causal_bound_score(fr, bound_features(obs), h)}
    for sc in cfg.scale_candidates:
        x, _ = draw_images(_intervention_sampler(gen, directions, cfg, float(sc), 11),
                           cfg.measure_n)
        scores[float(sc)] = causal_bound_score(fr, bound_features(x), h)
    chosen = cfg.scale if cfg.scale is not None else \
        max((s for s in scores if s > 0), key=lambda s: scores[s])
    log("  causal-bound score log P(x|z) on the validation split: " + ", ".join(
        f"s={k:g}: {v:.3f}" for k, v in scores.items()) + f" -> scale {chosen:g}"
        + (" (given)" if cfg.scale is not None else " (selected)"))
    return {"scores": {f"{k:g}": v for k, v in scores.items()}, "bandwidth": h,
            "scale": float(chosen), "selected": cfg.scale is None,
            "rule": "max log P(x|z) of the validation split over the candidate scales"}


def _measures(cfg: DemoConfig, gen, directions, train, scale, out: Path, log) -> dict:
    """Nuisance-label agreement and class consistency (genint_fast.diagnostics.nuisance) of the
    training images, the GAN's observational samples (gan-aug's truncation too), the selected
    interventions and the two controls."""
    from ..diagnostics.nuisance import cached_readers, measure_images, value_reference
    from ..intervene import ObservationalSampler, draw_images

    kw = dict(class_steps=60, nuisance_steps=40, n=600) if cfg.quick else {}
    readers = cached_readers(cfg.variant, out / "readers.pt", log=log, data_seed=cfg.data_seed,
                             **kw)
    n = cfg.measure_n
    # a continuous nuisance (hue, rotation): its values in the training images (else None)
    ref = value_reference(readers, train.float_images(), train.labels)
    rows = {"training images": measure_images(readers, train.float_images()[:n],
                                              train.labels[:n], reference=ref)}
    sets = {"observational (t = %g)" % cfg.truncation:
            ObservationalSampler(gen, truncation=cfg.truncation, seed=21),
            "gan-aug samples (t = %g)" % cfg.gan_aug_truncation:
            ObservationalSampler(gen, truncation=cfg.gan_aug_truncation, seed=22),
            "intervened (genint, s = %g)" % scale:
            _intervention_sampler(gen, directions, cfg, scale, 23),
            "random directions (control)":
            _intervention_sampler(gen, directions, cfg, scale, 24, control="random-directions"),
            "matched norm (control)":
            _intervention_sampler(gen, directions, cfg, scale, 25, control="matched-norm")}
    for name, sampler in sets.items():
        rows[name] = measure_images(readers, *draw_images(sampler, n), reference=ref)
    for name, r in rows.items():
        log(f"  {name:32s} " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in r.items()
                                         if k != "n"))
    return {"readers_accuracy": readers.accuracy, "rows": rows}


def _intervention_figure(gen, directions, cfg, out: Path):
    from ..intervene import intervention_grid, save_grid

    rows = list(range(min(8, directions.k)))
    imgs = intervention_grid(gen, directions, rows=rows, steps=9, scale=cfg.scale or 4.0,
                             mode=cfg.intervention_mode, seed=1,
                             class_ids=torch.arange(len(rows)) % gen.num_classes)
    return save_grid(imgs, out / "interventions.png", ncols=9)


def _gan_samples_figure(gen, out: Path):
    from ..intervene import save_grid

    rng = torch.Generator().manual_seed(0)
    labels = torch.arange(gen.num_classes).repeat(60 // gen.num_classes)
    with torch.no_grad():
        x = gen(gen.sample_latents(labels.numel(), generator=rng), labels)
    return save_grid(x, out / "gan_samples.png", ncols=10 if gen.num_classes == 10 else 12)


def _gradcam_figure(per_method: dict, models: dict, test_ood, out: Path, n=8):
    """Grad-CAM (torchcam) of erm and of the method with the best OOD mean on the first n OOD
    test images, seed 0 of each: OUT/gradcam.png. Returns what it drew (or None)."""
    from ..eval.gradcam import gradcam_sheet

    others = [m for m in per_method if m != "erm" and m in models]
    if "erm" not in models or not others:
        return None
    best = max(others, key=lambda m: per_method[m]["ood_mean"])
    rows = {"erm": (models["erm"], "mean"), best: (models[best], "mean")}
    x, y = test_ood.images[:n], test_ood.labels[:n]
    path = gradcam_sheet(rows, x, y, out / "gradcam.png")
    return {"path": path.name, "rows": list(rows), "images": int(x.shape[0]),
            "split": "test-ood", "seed": 0}


def _transfer_figure(trainer, out: Path, n=8):
    """Rows: real content, intervened style image, transferred result (label = content's)."""
    from ..intervene import save_grid

    content, _ = trainer.data.random_images(10 ** 6, n, "content")
    trainer.sampler.rng.manual_seed(7)
    style = trainer.to_real_range(trainer.sampler.sample(n)[0])
    trainer.transfer.rng.manual_seed(7)
    result = trainer.transfer(content, style).detach()
    grid = torch.cat([content.float(), style.float(), result.float()]) * 2 - 1
    return save_grid(grid, out / "transfers.png", ncols=n)
