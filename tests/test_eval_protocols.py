"""Scoring for the evaluation protocols (genint_fast.eval.robustness / objectnet / backgrounds /
cue_conflict), checked against hand-computed answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genint_fast.eval import backgrounds as bg
from genint_fast.eval import cue_conflict as cc
from genint_fast.eval import objectnet as on
from genint_fast.eval import robustness as rb

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- ImageNet-C

def _alexnet_table(scale=1.0):
    return {c: [scale * e] * 5 for c, e in rb.ALEXNET_ERR.items()}


def test_alexnet_scores_itself_100_and_half_errors_score_50():
    s = rb.mce(_alexnet_table())
    assert s.complete and s.label == "mCE" and s.corruptions == rb.CORRUPTIONS
    assert s.mce == pytest.approx(100.0, abs=1e-9)
    assert all(v == pytest.approx(100.0, abs=1e-9) for v in s.per_corruption.values())
    assert rb.mce(_alexnet_table(0.5)).mce == pytest.approx(50.0, abs=1e-9)
    r = rb.relative_mce(_alexnet_table(), rb.ALEXNET_CLEAN_ERR)
    assert r.label == "relative mCE" and r.mce == pytest.approx(100.0, abs=1e-9)


def test_hand_computed_ce_and_relative_ce_against_a_user_baseline():
    # Model errors per severity and a baseline's, for two corruptions.
    errors = {"gaussian_noise": [0.3, 0.4, 0.5, 0.6, 0.7],      # sum 2.5
              "fog": [0.2, 0.2, 0.3, 0.3, 0.5]}                 # sum 1.5
    ref = {"gaussian_noise": [0.4, 0.5, 0.6, 0.7, 0.8],         # sum 3.0
           "fog": [0.3, 0.3, 0.4, 0.5, 0.5]}                    # sum 2.0
    s = rb.mce(errors, reference=ref)
    # CE: 2.5 / 3.0 = 83.333..%, 1.5 / 2.0 = 75%; mean = 79.1666..%
    assert s.per_corruption == pytest.approx({"gaussian_noise": 250 / 3, "fog": 75.0})
    assert s.mce == pytest.approx((250 / 3 + 75.0) / 2)
    assert not s.complete and s.label == "mCE over 2 of 15 corruptions"
    # Relative CE with clean errors 0.1 (model) and 0.2 (baseline), fog errors now summing to 1.0:
    #   gaussian_noise: (2.5 - 5*0.1) / (3.0 - 5*0.2) = 2.0 / 2.0 = 100%
    #   fog:            (1.0 - 0.5)   / (2.0 - 1.0)   = 0.5 / 1.0 = 50%;  mean 75%
    errors["fog"] = [0.1, 0.2, 0.2, 0.25, 0.25]
    r = rb.relative_mce(errors, 0.1, ref, 0.2)
    assert r.per_corruption == pytest.approx({"gaussian_noise": 100.0, "fog": 50.0})
    assert r.mce == pytest.approx(75.0)
    # A reference given as per-corruption means (0.6 -> sum 3.0, 0.4 -> sum 2.0) equals the same
    # reference per severity: CE 2.5/3.0 and 1.0/2.0 -> (83.33 + 50) / 2.
    by_mean = rb.mce(errors, reference={"gaussian_noise": 0.6, "fog": 0.4})
    assert by_mean.mce == pytest.approx(rb.mce(errors, reference=ref).mce)
    assert by_mean.mce == pytest.approx((250 / 3 + 50.0) / 2)
    # Against AlexNet (per-severity sum = 5 x mean): fog CE = 1.0 / (5 * 0.819324)
    a = rb.mce({"fog": [0.1, 0.2, 0.2, 0.25, 0.25]})
    assert a.per_corruption["fog"] == pytest.approx(100 * 1.0 / (5 * 0.819324))


def test_extra_corruptions_are_scored_but_not_averaged():
    table = _alexnet_table()
    table["speckle_noise"] = [0.5] * 5
    ref = dict(rb.ALEXNET_ERR, speckle_noise=0.25)
    s = rb.mce(table, reference=ref)
    assert s.per_corruption["speckle_noise"] == pytest.approx(200.0)
    assert s.mce == pytest.approx(100.0) and s.complete
    with pytest.raises(ValueError, match="reference has no error for 'speckle_noise'"):
        rb.mce(table)


@pytest.mark.parametrize("bad, msg", [
    ({"fog": [0.1, 0.2, 0.3, 0.4]}, "mean over 5 severities"),   # AlexNet needs all 5
    ({"fog": [0.1] * 5, "snow": [0.1] * 4}, "different numbers of severities"),
    ({"fog": []}, "exactly 5"),
    ({"fog": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, "exactly 5"),
    ({"fog": [0.1, 0.2, 0.3, 0.4, 45.0]}, "not percent"),
    ({"fog": [0.1, 0.2, -0.1, 0.4, 0.5]}, r"\[0, 1\]"),
    ({"fog": [0.1, 0.2, float("nan"), 0.4, 0.5]}, r"\[0, 1\]"),
    ({"fog": [0.1, "x", 0.3, 0.4, 0.5]}, "numbers"),
    ({"rain": [0.1] * 5}, "unknown corruption 'rain'"),
    ({}, "non-empty"),
])
def test_bad_error_tables_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        rb.mce(bad)


def test_fewer_severities_against_a_per_severity_reference():
    # Severities 1 and 3 only: CE = (0.2 + 0.4) / (0.3 + 0.5) = 0.6 / 0.8 = 75%;
    # relative with clean 0.1 / 0.2: (0.6 - 2*0.1) / (0.8 - 2*0.2) = 0.4 / 0.4 = 100%.
    errors, ref = {"fog": [0.2, 0.4]}, {"fog": [0.3, 0.5]}
    s = rb.mce(errors, reference=ref)
    assert s.mce == pytest.approx(75.0) and s.severities == 2 and not s.complete
    assert s.label == "mCE over 1 of 15 corruptions, 2 of 5 severities"
    assert rb.relative_mce(errors, 0.1, ref, 0.2).mce == pytest.approx(100.0)
    with pytest.raises(ValueError, match="same severities"):
        rb.mce(errors, reference={"fog": [0.3, 0.5, 0.6]})


def test_relative_mce_refuses_an_undegraded_reference_and_half_given_reference():
    errors = {"brightness": [0.3] * 5}
    with pytest.raises(ValueError, match="not degraded by brightness"):
        rb.relative_mce(errors, 0.25, {"brightness": [0.2] * 5}, 0.2)   # 1.0 - 5*0.2 = 0
    with pytest.raises(ValueError, match="both"):
        rb.relative_mce(errors, 0.25, {"brightness": [0.2] * 5})


# ----------------------------------------------------------------------------- ObjectNet

MAP3 = {"a": [0, 1], "b": [2], "c": [3, 4]}          # index 5 is mapped to nothing


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_relative_mce_where_defined_leaves_out_undegraded_corruptions():
    # baseline: clean 0.10; fog degrades it (0.30 at both severities), pixelate does not (0.10)
    base = {"fog": [0.30, 0.30], "pixelate": [0.10, 0.10]}
    ours = {"fog": [0.20, 0.30], "pixelate": [0.05, 0.10]}
    score, left_out = rb.relative_mce_where_defined(ours, 0.05, base, 0.10)
    # fog: ((0.20 - 0.05) + (0.30 - 0.05)) / ((0.30 - 0.10) * 2) = 0.40 / 0.40 = 100 %
    assert left_out == ["pixelate"] and score.corruptions == ("fog",)
    assert score.mce == pytest.approx(100.0) and not score.complete
    with pytest.raises(ValueError, match="no corruption raises"):
        rb.relative_mce_where_defined({"pixelate": [0.1]}, 0.1, {"pixelate": [0.1]}, 0.1)


def test_objectnet_topk_unrestricted_and_restricted():
    logits = _logits([
        # 0    1    2    3    4    5
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # img0 (a): argmax 1 in a            -> top1 hit
        [9.0, 0.0, 8.0, 0.0, 0.0, 0.0],   # img1 (b): argmax 0 (a), 2 second   -> top5 hit only
        [0.0, 0.0, 0.0, 0.1, 0.0, 5.0],   # img2 (c): argmax 5 (unmapped), then 3 (c)
                                          #   unrestricted: top1 miss, top5 hit
                                          #   restricted:   5 removed -> argmax 3 -> top1 hit
        [0.0, 0.0, 6.0, 0.0, 0.0, 7.0],   # img3 (a): order 5,2,then ties at 0 -> ranks: 5,2,0,...
    ])
    # img3: unrestricted top-5 = {5, 2, and three of the zeros 0,1,3,4} -> holds 0 or 1 -> hit.
    # Unrestricted: top1 hits = img0 -> 1/4 = 25%; top5 hits = all 4 -> 100%.
    r = on.objectnet_topk(logits, ["a", "b", "c", "a"], MAP3)
    assert r == {"top1": 25.0, "top5": 100.0, "n": 4}
    # Restricted (logit 5 -> -inf): img0 hit, img1 argmax 0 (a) miss, img2 argmax 3 hit,
    # img3 argmax 2 (b) miss -> top1 = 2/4 = 50%; top5 over the 5 mapped classes -> 100%.
    r = on.objectnet_topk(logits, ["a", "b", "c", "a"], MAP3, restricted=True)
    assert r == {"top1": 50.0, "top5": 100.0, "n": 4}
    # Targets as ids into sorted(mapping) give the same answer; top-2 as an extra k.
    r = on.objectnet_topk(logits, torch.tensor([0, 1, 2, 0]), MAP3, ks=(1, 2))
    # top-2: img0 {1,0} hit, img1 {0,2} hit, img2 {5,3} hit, img3 {5,2} miss -> 75%
    assert r == {"top1": 25.0, "top2": 75.0, "n": 4}


def test_objectnet_mapping_validation(tmp_path):
    p = tmp_path / "map.json"
    p.write_text(json.dumps({"alarm_clock": [409, 530], "banana": [954]}))
    m = on.load_mapping(p)
    assert m == {"alarm_clock": [409, 530], "banana": [954]} and len(m) == 2
    for text, msg in [("{not json", "not valid JSON"),
                      ('{"a": [1.5]}', "must be integers"),
                      ('{"a": ["3"]}', "must be integers"),
                      ('{"a": [1000]}', "outside 0..999"),
                      ('{"a": [-1]}', "outside 0..999"),
                      ('{"a": []}', "non-empty list"),
                      ("[1, 2]", "non-empty JSON object")]:
        p.write_text(text)
        with pytest.raises(ValueError, match=msg):
            on.load_mapping(p)
    with pytest.raises(ValueError, match="cannot read"):
        on.load_mapping(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not in the mapping"):
        on.objectnet_topk(_logits([[1.0] * 6]), ["zebra"], MAP3)
    with pytest.raises(ValueError, match="outside 0..3"):          # index 4 >= 4 logits
        on.objectnet_topk(_logits([[1.0] * 4]), ["a"], MAP3)


def test_mapping_from_objectnet_release(tmp_path):
    # A toy release: 3 ILSVRC-2012 ids whose pytorch order is reversed.
    (tmp_path / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"alarm_clock": "Alarm clock", "air_freshener": "Air freshener"}))
    (tmp_path / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"Alarm clock": "analog clock; digital clock"}))
    (tmp_path / "imagenet_to_label_2012_v2").write_text("analog clock\ndigital clock\nbanana\n")
    (tmp_path / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({"0": 2, "1": 1, "2": 0}))
    assert on.mapping_from_objectnet_release(tmp_path, num_classes=3) == {"alarm_clock": [2, 1]}


def _bordered(w, h, border=1):
    img = Image.new("RGB", (w, h), (255, 0, 0))
    img.paste(Image.new("RGB", (w - 2 * border, h - 2 * border), (0, 255, 0)), (border, border))
    return img


def test_objectnet_border_crop_and_transform():
    img = _bordered(40, 30)
    out = on.crop_border(img, 2)
    assert out.size == (36, 26)
    assert (np.asarray(out) == (0, 255, 0)).all()                  # red frame gone
    assert on.crop_border(img, 0) is img                            # untouched with px=0
    x = on.objectnet_transform(size=16)(img)                        # 40x30 -> crop 36x26 -> 25 -> 16
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[1], torch.ones(16, 16)) and x[0].abs().max() < 1e-6
    # Without the border crop the resize would bleed red into the output's edge.
    y = on.objectnet_transform(size=16, resize=16, border=0)(img)
    assert y[0].max() > 0.1
    with pytest.raises(ValueError):
        on.crop_border(img, 15)


# ----------------------------------------------------------------------------- ImageNet-9

def test_shipped_in9_map_matches_the_reference_counts():
    m = bg.load_in9_map()
    assert m.shape == (1000,)
    counts = [int((m == k).sum()) for k in range(9)]
    assert counts == [116, 52, 42, 36, 35, 27, 26, 20, 16] and int((m == -1).sum()) == 630
    # Spot checks against in_to_in9.json.
    assert m[0] == 8 and m[7] == 1 and m[33] == 3 and m[151] == 0 and m[171] == -1
    assert m[269] == 4 and m[300] == 5 and m[365] == 7 and m[401] == 6 and m[407] == 2 and m[999] == -1


def test_in9_map_other_file_forms(tmp_path):
    p = tmp_path / "in_to_in9.json"
    p.write_text(json.dumps({str(i): (0 if i == 5 else -1) for i in range(1000)}))
    m = bg.load_in9_map(p)
    assert m[5] == 0 and int((m == -1).sum()) == 999
    p.write_text(json.dumps([1] * 1000))
    assert int(bg.load_in9_map(p).sum()) == 1000
    for text in ("[1, 2]", json.dumps({"5": 9}), json.dumps({"1000": 0}), "nope"):
        p.write_text(text)
        with pytest.raises(ValueError):
            bg.load_in9_map(p)


def test_in9_predictions_accuracy_partial_batch_and_gap():
    table = bg.load_in9_map()
    # Argmax classes 151 (dog=0), 7 (bird=1), 500 (unmapped -> -1), 389 (fish=8).
    logits = torch.zeros(4, 1000)
    for r, c in enumerate([151, 7, 500, 389]):
        logits[r, c] = 1.0
    pred = bg.in9_predictions(logits, table)
    assert pred.tolist() == [0, 1, -1, 8]
    # The unmapped argmax (-1) is wrong whatever the target.
    assert bg.count_correct(pred, [0, 1, 0, 0]) == (2, 4)
    # 10 images in batches of 4, 4, 2 with 7 correct: accuracy is 7/10 = 70%, not 7/12.
    preds = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]), torch.tensor([8, 0])]
    targs = [torch.tensor([0, 1, 2, 0]), torch.tensor([4, 5, 6, 0]), torch.tensor([8, 1])]
    correct = sum(bg.count_correct(p, t)[0] for p, t in zip(preds, targs))
    n = sum(bg.count_correct(p, t)[1] for p, t in zip(preds, targs))
    assert (correct, n) == (7, 10)
    assert bg.accuracy(torch.cat(preds), torch.cat(targs)) == pytest.approx(70.0)
    # A 9-output model is scored directly.
    assert bg.in9_predictions(torch.eye(9)[[3, 8]]).tolist() == [3, 8]
    # BG-gap = mixed_same - mixed_rand: 86.2 - 78.9 = 7.3 points.
    g = bg.background_gap({"original": 95.6, "mixed_same": 86.2, "mixed_rand": 78.9})
    assert g["bg_gap"] == pytest.approx(7.3) and g["original"] == 95.6
    with pytest.raises(ValueError, match="mixed_rand"):
        bg.background_gap({"mixed_same": 80.0})
    with pytest.raises(ValueError, match="1000"):
        bg.in9_predictions(torch.zeros(2, 10))
    assert bg.in9_class_from_folder("06_musical instrument") == 6
    with pytest.raises(ValueError):
        bg.in9_class_from_folder("dog")


# ----------------------------------------------------------------------------- cue conflict

def test_shipped_16_class_map():
    m = cc.load_cue_conflict_map()
    assert tuple(m) == cc.CATEGORIES and len(m) == 16
    assert m["airplane"] == [404] and m["knife"] == [499] and m["oven"] == [766]
    assert m["bear"] == [294, 295, 296, 297] and m["truck"][-1] == 867
    assert len(m["dog"]) == 109 and len(m["bird"]) == 49 and sum(map(len, m.values())) == 207


def test_parse_cue_conflict_names():
    assert cc.parse_cue_conflict_name("airplane1-bicycle2.png") == ("airplane", "bicycle")
    assert cc.parse_cue_conflict_name("stimuli/bear/bear10-oven1.png") == ("bear", "oven")
    assert cc.parse_cue_conflict_name("airplane10-airplane1.png") == ("airplane", "airplane")
    for bad in ("airplane-bicycle.png", "zebra1-cat2.png", "cat1_dog2.png"):
        with pytest.raises(ValueError):
            cc.parse_cue_conflict_name(bad)


def test_decisions_16_uses_mean_probability_per_category():
    m = cc.load_cue_conflict_map()
    logits = torch.full((2, 1000), -30.0)
    # Image 0: one dog class very likely (p ~ .5) vs. the single airplane class at p ~ .2:
    # dog mean = .5/109 + tiny, airplane mean = .2 -> airplane. A sum would pick dog.
    logits[0, 152], logits[0, 404] = math.log(0.5), math.log(0.2)
    logits[0, 500] = math.log(0.3)                       # rest of the mass on a non-category class
    # Image 1: knife index 499 is the largest.
    logits[1, 499] = 5.0
    d = cc.decisions_16(logits, m)
    assert [cc.CATEGORIES[i] for i in d.tolist()] == ["airplane", "knife"]
    assert cc.decisions_16(torch.eye(16)[[2, 15]]).tolist() == [2, 15]


def test_shape_bias_hand_computed():
    shapes = ["cat", "cat", "dog", "dog", "car", "boat", "clock"]
    textures = ["dog", "dog", "cat", "dog", "truck", "boat", "bird"]
    decisions = ["cat", "dog", "cat", "dog", "oven", "boat", "clock"]
    # Excluded (shape == texture): img3 (dog/dog), img5 (boat/boat) -> 2 excluded, 5 conflicts.
    # Shape hits: img0 (cat), img6 (clock) = 2. Texture hits: img1 (dog), img2 (cat) = 2.
    # img4 decided oven: neither. Shape bias = 2 / (2 + 2) = 50%.
    r = cc.shape_bias(decisions, shapes, textures)
    assert r == {"shape_bias": 50.0, "shape_decisions": 2, "texture_decisions": 2,
                 "n_conflict": 5, "n_excluded": 2}
    # Ids work as well as names; a shape-only decider scores 100%.
    ids = lambda xs: [cc.CATEGORIES.index(x) for x in xs]  # noqa: E731
    r = cc.shape_bias(torch.tensor(ids(shapes)), ids(shapes), ids(textures))
    assert r["shape_bias"] == 100.0 and r["shape_decisions"] == 5
    assert math.isnan(cc.shape_bias(["oven"], ["cat"], ["dog"])["shape_bias"])
    with pytest.raises(ValueError, match="one of each"):
        cc.shape_bias(["cat"], ["cat", "dog"], ["dog"])
    with pytest.raises(ValueError, match="16 categories"):
        cc.shape_bias(["zebra"], ["cat"], ["dog"])
