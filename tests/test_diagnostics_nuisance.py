"""What interventions do, measured (genint_fast.diagnostics.nuisance, genint_fast.diagnostics.correlation):
agreement and consistency on hand-made images with known colours; the correlation score and the
causal-bound score on constructed data where the answer is known."""
import numpy as np
import pytest
import torch

from genint_fast.data.digits import STROKE_PALETTE, make_biased_digits
from genint_fast.diagnostics.correlation import (bound_features, causal_bound_score, correlation_score,
                                          median_bandwidth)
from genint_fast.diagnostics.nuisance import (agreement, consistency, load_readers, measure_images,
                                       save_readers, train_readers)
from genint_fast.diagnostics.shape import digit_shapes


@pytest.fixture(scope="module")
def readers():
    return train_readers("colored", n=2000, class_steps=250, nuisance_steps=60)


def _painted(colour_ids, n_seed=3):
    """Colour-free test-pool digits painted with the given palette colours: (images, labels)."""
    shapes, labels = digit_shapes("test", n=len(colour_ids), seed=n_seed)
    col = torch.from_numpy(STROKE_PALETTE[np.asarray(colour_ids)])[:, :, None, None]
    return shapes * col, labels


def test_readers_learn_their_targets(readers, tmp_path):
    assert readers.accuracy["stroke"] > 0.9 and readers.accuracy["class"] > 0.6
    save_readers(readers, tmp_path / "r.pt")
    again = load_readers(tmp_path / "r.pt")
    x, y = _painted([0] * 8)
    assert torch.equal(again.read(x), readers.read(x))


def test_agreement_on_known_colours(readers):
    n = 400
    shapes, labels = digit_shapes("test", n=n, seed=3)
    # 30% of the images painted in their label's colour, the rest in another class's colour
    follow = torch.arange(n) < int(0.3 * n)
    ids = torch.where(follow, labels, (labels + 1 + torch.arange(n) % 9) % 10)
    x, y = _painted(ids.tolist())
    assert torch.equal(y, labels)
    a = agreement(readers, x, y, "stroke")
    assert abs(a - 0.3) < 0.05, a
    assert agreement(readers, x, ids, "stroke") > 0.95   # read against the colours themselves


def test_consistency_tells_asked_from_wrong_class(readers):
    x, y = _painted([4] * 400)
    right = consistency(readers, x, y)
    wrong = consistency(readers, x, (y + 3) % 10)
    assert right > 0.6 and wrong < 0.15, (right, wrong)
    m = measure_images(readers, x, y)
    assert set(m) == {"agreement_stroke", "consistency", "n"} and m["n"] == 400
    assert m["agreement_stroke"] == pytest.approx(float((y == 4).float().mean()), abs=0.05)


def test_training_images_agree_about_rho(readers):
    """A share q = rho + (1 - rho) / 10 of the strokes has the label's colour; the reader reads
    the colour right with probability r (below 1: the reference's colour jitter lets
    neighbouring class colours overlap), so the agreement with the labels is about
    q r + (1 - q)(1 - r) / 9."""
    tr = make_biased_digits("colored", "train", 0.9, n=1000)
    a = agreement(readers, tr.float_images(), tr.labels, "stroke")
    r = agreement(readers, tr.float_images(), tr.nuisance[:, 0], "stroke")
    q = 0.9 + 0.1 / 10
    assert r > 0.85, r
    assert abs(a - (q * r + (1 - q) * (1 - r) / 9)) < 0.03, (a, r)


def test_correlation_score_on_known_correlation():
    torch.manual_seed(0)
    y = torch.arange(600) % 10

    class Identity(torch.nn.Module):           # "predicts" the nuisance = the mean colour
        def forward(self, x):
            return x.mean(dim=(2, 3))

    tied = STROKE_PALETTE[y.numpy()]                                   # nuisance = label
    free = STROKE_PALETTE[np.random.default_rng(0).integers(0, 10, 600)]   # independent
    def imgs(c):
        return torch.from_numpy(c)[:, :, None, None].expand(-1, -1, 8, 8).contiguous()
    hi = correlation_score(Identity(), imgs(tied), y)
    lo = correlation_score(Identity(), imgs(free), y)
    assert hi["chance"] == pytest.approx(0.1) and hi["times_chance"] > 9.0
    assert lo["times_chance"] < 1.6


def test_bound_prefers_the_matching_strategy():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, 16, 16, generator=g) * 0.5             # images in [0, 0.5]
    near = torch.rand(300, 3, 16, 16, generator=g) * 0.5             # same distribution
    far = 0.5 + torch.rand(300, 3, 16, 16, generator=g) * 0.5        # another one
    fr = bound_features(real)
    h = median_bandwidth(fr, bound_features(near))
    assert causal_bound_score(fr, bound_features(near), h) > \
        causal_bound_score(fr, bound_features(far), h) + 1.0


def test_analyze_commands(tmp_path, capsys):
    import json

    from genint_fast.cli import main

    common = ["--generator", "random:small32:0", "--num-directions", "8", "--top-k", "8",
              "--n", "60"]
    assert main(["analyze", "correlation", *common, "--steps", "5",
                 "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| intervened |" in out and "| observational |" in out
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    for r in rows.values():     # chance = the largest class share of 60 uniform labels
        assert 0.1 <= r["chance"] <= 0.3 and r["n"] == 60
        assert r["times_chance"] == pytest.approx(r["accuracy"] / r["chance"])
    assert main(["analyze", "bound", *common, "--sweep-scale", "0,2,8",
                 "--out", str(tmp_path / "b.json")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())
    assert [r["scale"] for r in res["rows"]] == [0.0, 2.0, 8.0]
    assert res["best"]["log_p"] == max(r["log_p"] for r in res["rows"])
    assert "(best)" in capsys.readouterr().out
    # bad input: one sentence, exit 2
    assert main(["analyze", "bound", *common, "--data", "nope"]) == 2
    assert "--data 'nope' is not an existing folder" in capsys.readouterr().err
    assert main(["analyze", "interventions", *common, "--data", "folder:/x"]) == 2
    assert "built-in digits only" in capsys.readouterr().err
