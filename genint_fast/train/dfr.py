"""Deep Feature Reweighting (Kirichenko, Izmailov & Wilson, ICLR 2023): last-layer retraining.

Start from an ERM model (`init_weights`), keep its feature extractor, and refit only the last
linear layer on a group-balanced held-out set: the validation split of the training
distribution, each (class, stroke colour) group subsampled to the size of the smallest group.
As the paper's code: features standardised, scikit-learn's L1 logistic regression (liblinear,
one-vs-rest for more than two classes),
the inverse regularisation C chosen from C_GRID by the worst-group accuracy on the second half
of the validation split after fitting on a balanced subset of the first half, then the final
layer the average of `dfr_retrains` fits (10) on balanced subsets of the whole split. It reads
group labels of held-out data only; GenInt and CGN need none.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["C_GRID", "last_linear", "embeddings", "balanced_subset", "fit_last_layer",
           "refit_trainer"]

C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)   # the paper's grid


def last_linear(model) -> torch.nn.Linear:
    """The classifier's last linear layer (SmallCNN `head`, ResNet `fc`)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not layers:
        raise ValueError("the model has no linear layer to retrain")
    return layers[-1]


@torch.no_grad()
def embeddings(model, images, *, normalise, device="cpu", batch_size=256) -> np.ndarray:
    """The last linear layer's inputs for uint8 images (N, 3, H, W), in eval mode."""
    layer, feats = last_linear(model), []
    hook = layer.register_forward_hook(lambda m, inp, out: feats.append(inp[0].float().cpu()))
    try:
        model.eval()
        for i in range(0, images.shape[0], batch_size):
            model(normalise(images[i:i + batch_size].to(device).float().div_(255)))
    finally:
        hook.remove()
    return torch.cat(feats).numpy().astype(np.float64)


def balanced_subset(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices with every present group subsampled (without replacement) to the smallest
    group's size, sorted."""
    groups = np.asarray(groups)
    present, counts = np.unique(groups, return_counts=True)
    k = int(counts.min())
    keep = [rng.choice(np.flatnonzero(groups == g), k, replace=False) for g in present]
    return np.sort(np.concatenate(keep))


def _fit(x, y, c, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    import sklearn

    scaler = StandardScaler().fit(x)
    # scikit-learn 1.8 replaced penalty="l1" by l1_ratio=1
    l1 = ({"l1_ratio": 1.0} if tuple(int(v) for v in sklearn.__version__.split(".")[:2])
          >= (1, 8) else {"penalty": "l1"})
    # the paper's liblinear, one-vs-rest for more than two classes (scikit-learn >= 1.8 no
    # longer does that by itself; saga's multinomial L1 took 100x longer here)
    from sklearn.multiclass import OneVsRestClassifier

    lr = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear", random_state=seed,
                                                **l1))
    lr.fit(scaler.transform(x), y)
    return scaler, lr


def _to_layer(scaler, lr, num_classes):
    """(W, b) of the raw-feature linear map equal to lr.decision_function(scaler(x)), one row
    per class (a binary fit gives -f / 2, +f / 2, the same argmax and softmax ratio)."""
    coef = np.concatenate([e.coef_ for e in lr.estimators_]) / scaler.scale_
    bias = np.concatenate([e.intercept_ for e in lr.estimators_]) - coef @ scaler.mean_
    if coef.shape[0] == 1:
        coef, bias = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    w = np.zeros((num_classes, coef.shape[1]))
    b = np.full(num_classes, -1e4)      # classes absent from the held-out set are never chosen
    w[lr.classes_] = coef
    b[lr.classes_] = bias
    return w, b


def fit_last_layer(x, y, groups, *, num_classes, retrains=10, c_grid=C_GRID, seed=0) -> dict:
    """DFR on features x (N, D) with labels y and groups: returns {"weight", "bias", "C",
    "tune_worst_group", "subset_size"}."""
    from ..eval.groups import group_accuracy

    y, groups = np.asarray(y), np.asarray(groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    a, b = order[: len(y) // 2], order[len(y) // 2:]
    scores = {}
    for c in c_grid:
        sub = a[balanced_subset(groups[a], rng)]
        scaler, lr = _fit(x[sub], y[sub], c, seed)
        scores[c] = group_accuracy(torch.as_tensor(lr.predict(scaler.transform(x[b]))),
                                   torch.as_tensor(y[b]), torch.as_tensor(groups[b]),
                                   min_count=1)["worst"]
    best_c = max(c_grid, key=lambda c: (scores[c], -c_grid.index(c)))
    ws, bs = [], []
    for r in range(retrains):
        sub = balanced_subset(groups, rng)
        w, bias = _to_layer(*_fit(x[sub], y[sub], best_c, seed + r), num_classes)
        ws.append(w)
        bs.append(bias)
    return {"weight": np.mean(ws, 0), "bias": np.mean(bs, 0), "C": best_c,
            "tune_worst_group": scores[best_c], "subset_size": int(len(sub))}


def refit_trainer(trainer) -> dict:
    """Mode dfr: the trainer's model (init_weights) gets its last layer refit on the
    group-balanced validation split; the rest stays as init_weights left it. The trainer saves
    the result as its final checkpoint; returns the run's metrics row."""
    from ..eval.groups import group_ids
    from .data import load_digits_split

    cfg = trainer.cfg
    images, labels, nuisance = load_digits_split(cfg, "val", cfg.val_size, nuisance=True)
    x = embeddings(trainer.model, images, normalise=trainer.normalise, device=trainer.device)
    res = fit_last_layer(x, labels.numpy(), group_ids(labels, nuisance).numpy(),
                         num_classes=cfg.num_classes, retrains=cfg.dfr_retrains, seed=cfg.seed)
    layer = last_linear(trainer.model)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(res["weight"], dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(res["bias"], dtype=layer.bias.dtype))
    trainer.step = cfg.steps
    trainer.save()
    trainer.log(f"DFR: last layer refit on {res['subset_size']} group-balanced validation "
                f"images x {cfg.dfr_retrains} (C {res['C']:g}, tuning worst-group "
                f"{100 * res['tune_worst_group']:.1f}%)")
    return {"step": trainer.step, "dfr_C": res["C"], "dfr_subset": res["subset_size"],
            "dfr_tune_worst_group": res["tune_worst_group"]}
