"""Trainer with CGN counterfactuals (issue 11): modes cgn and real+cgn, the invariant ensemble,
streams that compose, config checks, and eval of an ensemble checkpoint."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from genint_fast.cgn import CGNConfig, CGNTrainConfig, train_cgn
from genint_fast.cli import main as cli_main
from genint_fast.train import Trainer, load_config, stream_losses
from genint_fast.classifier.models import EnsembleModel, build_model
from genint_fast.train.objective import Stream

TINY = ["steps=1", "data_size=120", "batch_size=16", "gen_batch_size=8", "num_directions=8",
        "top_k=8", "m=3", "progress=false", "log_every=1", "checkpoint_every=100", "lr=0.05",
        "cgn_batch_size=12", "augment=false", "producer=inline"]


@pytest.fixture(scope="module")
def cgn_ckpt(tmp_path_factory):
    """A tiny CGN checkpoint (random mechanisms: the stream's plumbing is under test here)."""
    path = tmp_path_factory.mktemp("cgn") / "cgn.pt"
    g = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 32, 32, generator=g) * 2 - 1
    labels = torch.arange(32) % 10
    train_cgn(images, labels, path, model_config=CGNConfig(ch=8),
              train_config=CGNTrainConfig(steps=1, batch_size=4, feature_net="none",
                                          log_every=0), log=lambda *_: None)
    return path


def tiny(tmp_path, cgn_ckpt, *extra):
    return load_config(None, TINY + [f"out={tmp_path / 'run'}", f"cgn={cgn_ckpt}", *extra])


def _hand_ce(logits, y):
    logp = logits.double().log_softmax(dim=1)
    return -logp[torch.arange(len(y)), y].mean()


def _row(cfg):
    return json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])


def test_mode_cgn_trains_on_counterfactuals_only(tmp_path, cgn_ckpt):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=cgn")
    tr = Trainer(cfg, log=lambda *_: None)
    model0 = copy.deepcopy(tr.model).train()
    gen = tr.make_generated(0)
    streams = tr.streams_for(0, gen)
    assert [s.name for s in streams] == ["counterfactual"]
    x, y, heads = gen["counterfactual"]
    assert x.shape == (12, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(heads[:, 0], y) and heads.shape == (12, 3)
    tr.fit()
    with torch.no_grad():
        ce = _hand_ce(model0(streams[0].images), y)
    row = _row(cfg)
    assert set(k for k in row if k.startswith("loss_")) == {"loss_counterfactual"}
    assert row["loss"] == pytest.approx(float(ce), rel=1e-5)


@pytest.mark.parametrize("extra, weight", [([], 0.05), (["lambda_cgn=0.7"], 0.7)])
def test_mode_real_plus_cgn_weights_the_stream(tmp_path, cgn_ckpt, extra, weight):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=real+cgn", *extra)   # lambda1 default 0.05
    tr = Trainer(cfg, log=lambda *_: None)
    model0 = copy.deepcopy(tr.model).train()
    streams = tr.streams_for(0, tr.make_generated(0))
    assert [s.name for s in streams] == ["real", "counterfactual"]
    tr.fit()
    xr, yr = streams[0].images, streams[0].labels
    xc, yc = streams[1].images, streams[1].labels
    with torch.no_grad():
        logits = model0(torch.cat([xr, xc]))      # one concatenated forward
    ce_r, ce_c = _hand_ce(logits[:len(yr)], yr), _hand_ce(logits[len(yr):], yc)
    row = _row(cfg)
    assert row["loss_real"] == pytest.approx(float(ce_r), rel=1e-5)
    assert row["loss_counterfactual"] == pytest.approx(float(ce_c), rel=1e-5)
    assert row["loss"] == pytest.approx(float(ce_r + weight * ce_c), rel=1e-5)


def test_ensemble_losses_against_hand_computation(tmp_path, cgn_ckpt):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=real+cgn", "heads=ensemble", "lambda_cgn=0.5")
    tr = Trainer(cfg, log=lambda *_: None)
    assert isinstance(tr.model, EnsembleModel) and len(tr.model.heads) == 3
    model0 = copy.deepcopy(tr.model).train()
    streams = tr.streams_for(0, tr.make_generated(0))
    tr.fit()
    xr, yr = streams[0].images, streams[0].labels
    xc, hc = streams[1].images, streams[1].head_labels
    with torch.no_grad():
        heads = model0(torch.cat([xr, xc]), heads=True)     # (3, B, C)
    hr, hcf = heads[:, :len(yr)], heads[:, len(yr):]
    ce_real = _hand_ce(hr.mean(0), yr)                       # the mean of the heads on real
    ce_cf = sum(_hand_ce(hcf[k], hc[:, k]) for k in range(3))  # each head, its own label
    row = _row(cfg)
    assert row["loss_real"] == pytest.approx(float(ce_real), rel=1e-5)
    assert row["loss_counterfactual"] == pytest.approx(float(ce_cf), rel=1e-5)
    assert row["loss"] == pytest.approx(float(ce_real + 0.5 * ce_cf), rel=1e-5)
    # the texture and background heads see different labels than the shape head
    assert not torch.equal(hc[:, 1], hc[:, 0]) or not torch.equal(hc[:, 2], hc[:, 0])


def test_ensemble_forward_is_mean_of_heads_and_stream_losses_directly():
    torch.manual_seed(0)
    for name in ("smallcnn", "resnet18"):
        m = build_model(name, 4, heads="ensemble").eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            h = m(x, heads=True)
            assert h.shape == (3, 2, 4)
            assert torch.allclose(m(x), h.mean(0))
    m = build_model("smallcnn", 4, heads="ensemble").train()
    x = torch.randn(6, 3, 32, 32)
    hl = torch.tensor([[0, 1, 2], [1, 1, 0], [2, 3, 3], [3, 0, 1], [0, 0, 0], [1, 2, 3]])
    total, per = stream_losses(m, [Stream("cf", x, hl[:, 0], 2.0, head_labels=hl)],
                               ensemble=True)
    with torch.no_grad():
        h = m(x, heads=True)
    want = sum(_hand_ce(h[k], hl[:, k]) for k in range(3))
    assert float(per["cf"].detach()) == pytest.approx(float(want), rel=1e-5)
    assert float(total.detach()) == pytest.approx(2.0 * float(want), rel=1e-5)
    with pytest.raises(ValueError, match="single or ensemble"):
        build_model("smallcnn", 4, heads="many")


def test_streams_compose_interventions_and_counterfactuals(tmp_path, cgn_ckpt):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=genint", "lambda1=0.2", "lambda_cgn=0.3", "steps=2")
    tr = Trainer(cfg, log=lambda *_: None)
    streams = tr.streams_for(0, tr.make_generated(0))
    assert [(s.name, s.weight) for s in streams] == [("real", 1.0), ("intervened", 0.2),
                                                     ("counterfactual", 0.3)]
    row = tr.fit()
    assert {k for k in row if k.startswith("loss_")} == {"loss_real", "loss_intervened",
                                                         "loss_counterfactual"}
    assert row["loss"] == pytest.approx(row["loss_real"] + 0.2 * row["loss_intervened"]
                                        + 0.3 * row["loss_counterfactual"], rel=1e-5)


def test_counterfactual_stream_is_a_pure_function_of_step(tmp_path, cgn_ckpt):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=real+cgn", "augment=true", "cgn_per_mask=3")
    a = Trainer(cfg, log=lambda *_: None)
    b = Trainer(cfg, log=lambda *_: None)
    xa, ya, ha = a.make_generated(5)["counterfactual"]
    a.make_generated(6)
    xb, yb, hb = b.make_generated(5)["counterfactual"]
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ha, hb)
    assert not torch.equal(a.make_generated(7)["counterfactual"][0], xa)
    assert torch.equal(ya.view(4, 3), ya.view(4, 3)[:, :1].expand(4, 3))   # 3 per mask


@pytest.mark.parametrize("override, words", [
    (["mode=cgn", "cgn=null"], "cgn must name a `genint-fast cgn` checkpoint"),
    (["mode=real+cgn", "cgn=/nonexistent/cgn.pt"], "existing `genint-fast cgn` checkpoint"),
    (["mode=erm", "heads=ensemble"], "ensemble needs a counterfactual stream"),
    (["mode=erm", "heads=three"], "heads must be"),
    (["mode=mixup", "CGN"], "cannot be combined with mode mixup"),
    (["mode=real+cgn", "CGN", "cgn_labels=random"], "cgn_labels must be"),
    (["mode=real+cgn", "CGN", "lambda_cgn=-1"], "lambda_cgn must be null or a number >= 0"),
])
def test_invalid_cgn_config_refused(override, words, cgn_ckpt):
    over = [f"cgn={cgn_ckpt}" if o == "CGN" else o for o in override]
    with pytest.raises(ValueError, match="invalid config") as info:
        load_config(None, over)
    assert words in str(info.value)


def test_cli_train_and_eval_an_ensemble_checkpoint(tmp_path, cgn_ckpt, capsys):
    out = tmp_path / "cli"
    args = ["train", *TINY, "steps=2", "mode=real+cgn", "heads=ensemble", "eval_size=60",
            f"cgn={cgn_ckpt}", f"out={out}"]
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert cli_main(["eval", "accuracy", "--checkpoint", str(out / "checkpoint.pt"), "--n",
                     "60", "--split", "test-ood", "--out", str(tmp_path / "ev")]) == 0
    res = json.loads(capsys.readouterr().out.strip())
    assert res["images"]["n"] == 60
    assert res["rows"][0]["top1"] == pytest.approx(summary["test-ood"]["top1"])


# ------------------------------------------------- the reference classifier protocol (issue 21)
def test_a_fixed_counterfactual_set_is_drawn_once_and_counts_the_epochs(tmp_path, cgn_ckpt):
    """cgn_set=N: N counterfactuals drawn before training (cgn_per_mask per mask: consecutive
    groups share a shape class and mask), stored as uint8; mode cgn counts epochs over the set;
    each epoch visits every image once, in a seeded order."""
    cfg = tiny(tmp_path, cgn_ckpt, "mode=cgn", "cgn_set=48", "cgn_per_mask=4", "epochs=2",
               "cgn_labels=permute")
    tr = Trainer(cfg, log=lambda *_: None)
    assert tr.cf_set_images.shape == (48, 3, 32, 32) and tr.cf_set_images.dtype == torch.uint8
    shapes = tr.cf_set_heads[:, 0].view(12, 4)
    assert (shapes == shapes[:, :1]).all()                 # 4 counterfactuals per mask
    assert tr.cfg.steps == 2 * (48 // 12)                  # epochs of the set, not of real data
    seen = []
    for step in range(4):
        x, y, heads = tr.make_generated(step)["counterfactual"]
        assert torch.equal(heads[:, 0], y) and x.shape == (12, 3, 32, 32)
        seen.append(x)
    flat = torch.cat(seen).mul(255).round().to(torch.uint8)
    # one epoch = every stored image once (compare as multisets of rows)
    key = lambda t: sorted(map(bytes, t.flatten(1).numpy()))  # noqa: E731
    assert key(flat) == key(tr.cf_set_images)
    # a second trainer with the same seed draws the same set and the same batches
    tr2 = Trainer(cfg, log=lambda *_: None)
    assert torch.equal(tr2.cf_set_images, tr.cf_set_images)
    assert torch.equal(tr2.make_generated(3)["counterfactual"][0], seen[3])
    tr.fit()


def test_adadelta_with_the_reference_schedule(tmp_path, cgn_ckpt):
    cfg = tiny(tmp_path, cgn_ckpt, "mode=cgn", "cgn_set=24", "optimizer=adadelta", "lr=1.0",
               "lr_gamma=0.7", "lr_step_epochs=1", "epochs=3", "weight_decay=0")
    tr = Trainer(cfg, log=lambda *_: None)
    assert isinstance(tr.optimizer, torch.optim.Adadelta)
    tr.fit()
    # 3 epochs of 2 steps: the rate fell by 0.7 after each epoch
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(0.7 ** 3)


@pytest.mark.parametrize("kv, msg", [("optimizer=adam", "optimizer"), ("cgn_set=5", "cgn_set")])
def test_bad_protocol_keys_are_refused(tmp_path, cgn_ckpt, kv, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(tmp_path, cgn_ckpt, "mode=cgn", kv)


def test_digits_are_not_mirrored_unless_asked():
    """The digits' augmentation is a random crop of the 4-padded image; hflip=true adds
    horizontal flips (a mirrored digit is another shape, so they are off by default)."""
    from genint_fast.train.trainer import RealData

    x = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 8:24, 4:8] = 255                     # a bar on the left half
    for flip, expect_right in ((False, False), (True, True)):
        data = RealData(x, torch.zeros(64, dtype=torch.long), batch_size=64, seed=0,
                        device="cpu", augment=True, flip=flip)
        xb, _ = data.batch(0)
        right = xb[:, 0, :, 16:].sum((1, 2)) > xb[:, 0, :, :16].sum((1, 2))
        assert bool(right.any()) == expect_right


def test_a_resampled_set_is_fresh_every_epoch_and_a_function_of_the_epoch(tmp_path, cgn_ckpt):
    """(The tiny CGN's images are nearly constant, so the drawn classes tell the sets apart.)"""
    cfg = tiny(tmp_path, cgn_ckpt, "mode=cgn", "cgn_set=24", "cgn_resample=true", "epochs=3")
    tr = Trainer(cfg, log=lambda *_: None)
    first = tr.cf_set_heads.clone()
    x_e1, y_e1, _ = tr.make_generated(2)["counterfactual"]     # epoch 1 (2 steps per epoch)
    assert not torch.equal(tr.cf_set_heads, first)
    second = tr.cf_set_heads.clone()
    tr.make_generated(0)                                        # back to epoch 0: same set
    assert torch.equal(tr.cf_set_heads, first)
    tr2 = Trainer(cfg, log=lambda *_: None)
    x2, y2, _ = tr2.make_generated(2)["counterfactual"]
    assert torch.equal(x2, x_e1) and torch.equal(y2, y_e1)
    assert torch.equal(tr2.cf_set_heads, second)
    tr.fit()


def test_the_cli_chain_on_an_exported_colored_mnist_folder(tmp_path, capsys):
    """What a user runs on a colored MNIST image folder: data export -> cgn (the folder's
    preset) -> train mode=cgn on the reference protocol's recipe -> eval accuracy on the OOD
    folder. Tiny sizes: the plumbing is under test; the README reports the full-size run."""
    root = tmp_path / "cmnist"
    assert cli_main(["data", "export", "--variant", "colored", "--out", str(root),
                     "--n-train", "60", "--n-test-ood", "30", "--splits", "train",
                     "test-ood"]) == 0
    ckpt = tmp_path / "cgn.pt"
    assert cli_main(["cgn", "--data", str(root / "train"), "--out", str(ckpt), "--steps", "2",
                     "--batch-size", "4", "--ch", "8", "--feature-net", "none",
                     "--log-every", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model_config"]["init"] == "orthogonal"     # the folder preset
    assert summary["train_config"]["ema"] == 0.999
    run = tmp_path / "run"
    assert cli_main(["train", "--config", str(Path(__file__).parents[1] / "configs" /
                                               "digits_cgn_reference.yaml"),
                     f"data=folder:{root / 'train'}", f"cgn={ckpt}", "cgn_set=64",
                     "cgn_batch_size=16", "batch_size=16", "epochs=2", "image_size=32",
                     f"out={run}",
                     "progress=false", "threads=1"]) == 0
    capsys.readouterr()
    assert cli_main(["eval", "accuracy", "--checkpoint", str(run / "checkpoint.pt"),
                     "--folder", str(root / "test-ood"), "--crop-fraction", "1",
                     "--out", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "accuracy.json").read_text())
    assert res["images"]["n"] == 30 and res["rows"][0]["step"] == 2 * 64 // 16
    assert 0.0 <= res["rows"][0]["top1"] <= 1.0
