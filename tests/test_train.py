"""Trainer (issue 7): config validation, objective, producers, checkpoints, exact resume, CLI."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genint_fast.cli import main as cli_main
from genint_fast.train import (Producer, Trainer, load_checkpoint, load_config, save_atomic,
                               stream_losses)
from genint_fast.train.objective import Stream

ROOT = Path(__file__).resolve().parents[1]
TINY = ["steps=4", "data_size=120", "batch_size=16", "gen_batch_size=8", "num_directions=8",
        "top_k=8", "m=3", "progress=false", "log_every=1", "checkpoint_every=2", "lr=0.05"]


def tiny(tmp_path, *extra):
    return load_config(None, TINY + [f"out={tmp_path / 'run'}", *extra])


# ---------------------------------------------------------------------------- config
def test_demo_config_loads_with_overrides():
    cfg = load_config(ROOT / "configs" / "digits_genint.yaml", ["steps=7", "lambda1=0.5", "device=cpu",
                                                        "directions=null", "forward=separate"])
    assert (cfg.mode, cfg.steps, cfg.lambda1, cfg.forward) == ("genint", 7, 0.5, "separate")
    assert cfg.directions is None and isinstance(cfg.lr, float)
    for name in ("digits_genint.yaml", "digits_genint_transfer.yaml"):
        load_config(ROOT / "configs" / name)   # ImageNet recipes: tests/test_recipes.py


@pytest.mark.parametrize("override, words", [
    ("lambda1=-1", "lambda1 must be >= 0"),
    ("mode=magic", "mode must be one of"),
    ("mode=stylized", "lambda2 must be > 0 in mode stylized"),
    ("transfer_steps=[3,1]", "transfer_steps must be [lo, hi]"),
    ("transfer_features=vgg16", "transfer_features 'vgg16' is neither a feature net"),
    ("model=vgg", "model must be one of"),
    ("steps=ten", "steps must be an integer"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("truncation=0", "truncation must be in (0, 1]"),
    ("data=digits:purple", "data 'digits:purple' names no built-in variant"),
    ("m=30", "need m <= top_k"),
    ("colour=red", "unknown key(s) colour"),
    ("steps", "must look like key=value"),
    ("step_ranges=reference", "reference ranges are set-mode latent units"),
])
def test_invalid_config_refused(override, words):
    with pytest.raises(ValueError, match="invalid config") as info:
        load_config(None, [override])
    assert words in str(info.value)


def test_invalid_config_refused_before_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: genint\nlr: -0.1\n")
    out = tmp_path / "never"
    assert cli_main(["train", "--config", str(bad), f"out={out}"]) == 2
    assert "invalid config: lr must be > 0" in capsys.readouterr().err
    assert not out.exists()
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------- objective
def _hand_ce(logits, y):
    logp = logits.double().log_softmax(dim=1)
    return -logp[torch.arange(len(y)), y].mean()


@pytest.mark.parametrize("forward", ["concat", "separate"])
def test_logged_loss_equals_hand_computed(tmp_path, forward):
    torch.manual_seed(0)
    cfg = tiny(tmp_path, "steps=1", "lambda1=0.3", f"forward={forward}", "augment=false")
    tr = Trainer(cfg)
    model0 = copy.deepcopy(tr.model).train()
    streams = tr.streams_for(0, tr.make_generated(0))
    tr.fit()
    row = json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])
    xr, yr = streams[0].images, streams[0].labels
    xi, yi = streams[1].images, streams[1].labels
    with torch.no_grad():
        if forward == "concat":
            logits = model0(torch.cat([xr, xi]))
            lr_, li = logits[:len(yr)], logits[len(yr):]
        else:
            lr_, li = model0(xr), model0(xi)
    ce_r, ce_i = _hand_ce(lr_, yr), _hand_ce(li, yi)
    assert row["loss_real"] == pytest.approx(float(ce_r), rel=1e-5)
    assert row["loss_intervened"] == pytest.approx(float(ce_i), rel=1e-5)
    assert row["loss"] == pytest.approx(float(ce_r + 0.3 * ce_i), rel=1e-5)


def test_concat_shares_batchnorm_statistics():
    torch.manual_seed(0)
    from genint_fast.train import build_model
    model = build_model("smallcnn", 3).train()
    a = Stream("real", torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]))
    b = Stream("intervened", torch.randn(4, 3, 32, 32) * 3 + 1, torch.tensor([2, 1, 0, 0]), 0.5)
    with torch.no_grad():
        tc, pc = stream_losses(model, [a, b], concat=True)
        ts, ps = stream_losses(model, [a, b], concat=False)
    assert float(tc) == pytest.approx(float(pc["real"] + 0.5 * pc["intervened"]), rel=1e-6)
    assert float(ts) == pytest.approx(float(ps["real"] + 0.5 * ps["intervened"]), rel=1e-6)
    assert abs(float(pc["real"] - ps["real"])) > 1e-4   # different batch statistics
    empty = Stream("transferred", torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    with torch.no_grad():
        t3, p3 = stream_losses(model, [a, b, empty], concat=True)
    assert set(p3) == {"real", "intervened"}


# ---------------------------------------------------------------------------- producers
def test_producer_thread_matches_inline_and_applies_back_pressure():
    calls = []

    def make(step):
        calls.append(step)
        g = torch.Generator().manual_seed(1000 + step)
        return (torch.randn(3, generator=g), torch.tensor([step]))

    p = Producer(make, 5, threaded=True, queue_size=2)
    time.sleep(0.5)
    made = len(calls)
    assert made <= 2 + 1   # queue full: the thread blocks holding at most one more batch
    got = [p.get()[0] for _ in range(6)]
    p.close()
    q = Producer(make, 5, threaded=False)
    want = [q.get()[0] for _ in range(6)]
    for (a, sa), (b, sb) in zip(got, want):
        assert torch.equal(a, b) and int(sa) == int(sb)
    assert [int(s) for _, s in got] == list(range(5, 11))


def test_producer_wait_time_is_measured():
    def slow(step):
        time.sleep(0.05)
        return (torch.tensor([step]),)

    p = Producer(slow, 0, threaded=True, queue_size=2)
    waits = [p.get()[1] for _ in range(3)]
    p.close()
    assert min(waits) > 0.02 and p.wait_total == pytest.approx(sum(waits))
    q = Producer(slow, 0, threaded=False)       # sequential: the whole generation is waited for
    assert q.get()[1] >= 0.05
    fast = Producer(lambda step: (torch.tensor([step]),), 0, threaded=True, queue_size=4)
    time.sleep(0.2)                              # the queue fills ahead of the consumer
    assert max(fast.get()[1] for _ in range(4)) < 0.02
    fast.close()


def test_producer_error_is_reported():
    def make(step):
        raise OSError("disk on fire")

    p = Producer(make, 0, threaded=True)
    with pytest.raises(RuntimeError, match="disk on fire"):
        p.get()
    p.close()


# ---------------------------------------------------------------------------- checkpoints
_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from genint_fast.train import load_config, Trainer
    out, action, *over = sys.argv[1:]
    out = Path(out)
    cfg = load_config(None, over + [f"out={out}", "threads=1"])
    tr = Trainer(cfg)
    if action == "resume":
        assert tr.resume(), "no checkpoint to resume"
    def on_step(t, row):
        if action == "slow":
            (out / "alive").write_text(str(t.step))
            time.sleep(0.1)
    if action == "stall-save":
        import genint_fast.train.checkpoint as ck
        real_save, n = ck.torch.save, [0]
        def save(obj, fh):
            n[0] += 1
            if n[0] < 2:
                return real_save(obj, fh)
            import io
            buf = io.BytesIO(); real_save(obj, buf)
            data = buf.getvalue()
            fh.write(data[: len(data) // 2]); fh.flush()
            (out / "writing").write_text("1")
            time.sleep(120)
        ck.torch.save = save
    tr.fit(on_step)
    torch.save(tr.model.state_dict(), out / "final.pt")
""")


def _spawn(out, action, *over):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(out), action, *over],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(pred, proc, timeout=120):
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def _finish(proc):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


RESUME_OVER = TINY[1:] + ["steps=8", "checkpoint_every=3", "mode=genint", "lambda1=0.2"]


def test_sigkill_then_resume_is_bitwise_equal(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    pf = _spawn(full, "run", *RESUME_OVER)
    pk = _spawn(killed, "slow", *RESUME_OVER)
    alive = killed / "alive"
    _wait_for(lambda: alive.exists() and alive.read_text().strip() not in ("", "1", "2", "3"),
              pk)
    pk.send_signal(signal.SIGKILL)
    pk.wait()
    _finish(pf)
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 3
    assert not (killed / "final.pt").exists()
    _finish(_spawn(killed, "resume", *RESUME_OVER))
    a = torch.load(full / "final.pt")
    b = torch.load(killed / "final.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca, cb = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert ca["step"] == cb["step"] == 8
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    # the resumed run logged steps 4..8 once more, with the same losses as the full run
    rows_full = {r["step"]: r["loss"] for r in map(json.loads,
                                                   (full / "metrics.jsonl").read_text().splitlines())}
    rows_k = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert rows_k[-1]["step"] == 8 and rows_k[-1]["loss"] == rows_full[8]


def test_kill_during_checkpoint_write_keeps_latest_intact(tmp_path):
    out = tmp_path / "run"
    p = _spawn(out, "stall-save", *RESUME_OVER)
    _wait_for(lambda: (out / "writing").exists(), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    tmps = list(out.glob("checkpoint.pt.tmp*"))
    assert tmps, "the kill did not land during a write"
    with pytest.raises(Exception):
        torch.load(tmps[0], weights_only=False)     # the half-written file is corrupt
    st = load_checkpoint(out / "checkpoint.pt")      # ... but the latest is the previous one
    assert st["step"] == 3


def test_save_atomic_replaces_and_corrupt_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"format": "genint-fast-train/1", "step": 1}, path)
    save_atomic({"format": "genint-fast-train/1", "step": 2}, path)
    assert load_checkpoint(path)["step"] == 2 and list(tmp_path.iterdir()) == [path]
    path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_checkpoint_at_epoch_end(tmp_path):
    tr = Trainer(tiny(tmp_path, "steps=8", "checkpoint_every=100", "mode=erm"))
    assert tr.data.per_epoch == 7                 # 120 images, batches of 16
    seen = []
    tr.fit(lambda t, row: seen.append(load_checkpoint(t.checkpoint_path)["step"])
           if t.checkpoint_path.exists() else None)
    assert seen == [7, 8]                          # epoch end, then the end of the run


def test_init_weights_fine_tune(tmp_path):
    first = Trainer(tiny(tmp_path, "steps=2", "mode=erm"))
    first.fit()
    ck = str(first.checkpoint_path)
    tr = Trainer(tiny(tmp_path / "b", "steps=2", "mode=erm", f"init_weights={ck}"))
    for k, v in first.model.state_dict().items():
        assert torch.equal(tr.model.state_dict()[k], v)
    sd = tmp_path / "plain.pt"
    torch.save(first.model.state_dict(), sd)
    tr = Trainer(tiny(tmp_path / "c", "steps=2", "mode=erm", f"init_weights={sd}"))
    assert torch.equal(tr.model.head.weight, first.model.head.weight)
    with pytest.raises(ValueError, match="does not fit the model"):
        Trainer(tiny(tmp_path / "d", "mode=erm", "model=resnet18", f"init_weights={sd}"))
    with pytest.raises(ValueError, match="init_weights must be null or an existing file"):
        tiny(tmp_path, f"init_weights={tmp_path / 'nope.pt'}")


def test_resume_refuses_a_different_config(tmp_path):
    Trainer(tiny(tmp_path, "steps=2", "mode=erm")).fit()
    tr = Trainer(tiny(tmp_path, "steps=3", "mode=erm", "lr=0.2"))
    with pytest.raises(ValueError, match="config differs in lr"):
        tr.resume()
    tr = Trainer(tiny(tmp_path, "steps=3", "mode=erm"))
    assert tr.resume() and tr.step == 2


# ---------------------------------------------------------------------------- modes and CLI
@pytest.mark.parametrize("mode", ["erm", "mixup", "autoaugment", "gan-aug", "stylized",
                                  "genint-transfer"])
def test_modes_run_and_log_their_streams(tmp_path, mode):
    cfg = tiny(tmp_path, "steps=2", f"mode={mode}", "producer=inline", "lambda2=0.5",
               "transfer_batch_size=4", "transfer_steps=[2,3]", "transfer_optimizer=adam")
    row = Trainer(cfg).fit()
    want = {"erm": {"loss_real"}, "mixup": {"loss_real"}, "autoaugment": {"loss_real"},
            "gan-aug": {"loss_real", "loss_generated"},
            "stylized": {"loss_real", "loss_transferred"},
            "genint-transfer": {"loss_real", "loss_intervened", "loss_transferred"}}[mode]
    assert {k for k in row if k.startswith("loss_")} == want
    assert row["step"] == 2 and row["wait_fraction"] >= 0
    weights = {"loss_real": 1.0, "loss_intervened": 0.05, "loss_generated": 0.05,
               "loss_transferred": 0.5}           # L = CE + lambda1 CE_int + lambda2 CE_itr
    assert row["loss"] == pytest.approx(sum(weights[k] * row[k] for k in want), rel=1e-5)


def test_transferred_stream_is_deterministic_and_restyled(tmp_path):
    cfg = tiny(tmp_path, "mode=genint-transfer", "lambda2=1", "transfer_batch_size=3",
               "transfer_steps=[3,3]", "transfer_optimizer=adam")
    tr = Trainer(cfg)
    a, b, c = tr.make_generated(5), tr.make_generated(5), tr.make_generated(6)
    assert set(a) == {"intervened", "transferred"}
    for name in a:
        assert torch.equal(a[name][0], b[name][0]) and torch.equal(a[name][1], b[name][1])
    assert not torch.equal(a["transferred"][0], c["transferred"][0])
    content, labels = tr.data.random_images(5, 3, "content")
    x, y = a["transferred"]
    assert torch.equal(y, labels) and x.shape == content.shape
    assert (x - content).abs().max() > 1e-3 and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_tensorboard_events_match_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = tiny(tmp_path, "steps=2", "mode=erm", "tensorboard=true")
    Trainer(cfg).fit()
    rows = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(Path(cfg.out) / "tb"))
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [1, 2]
    assert [e.value for e in events] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_cli_train_then_eval(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--config", str(ROOT / "configs" / "digits_genint.yaml"), *TINY, "steps=3",
            "mode=erm", "eval_size=100", f"out={out}"]
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and set(summary) >= {"test-id", "test-ood", "final"}
    assert summary["test-ood"]["top1"] <= summary["test-ood"]["top5"]
    assert cli_main(args) == 2       # refuses to overwrite without --resume
    assert "pass --resume" in capsys.readouterr().err
    ev = ["eval", "accuracy", "--checkpoint", str(out / "checkpoint.pt"), "--out",
          str(tmp_path / "ev")]
    assert cli_main([*ev, "--n", "50", "--split", "test-id"]) == 0
    res = json.loads(capsys.readouterr().out.strip())
    (row,) = res["rows"]
    assert res["images"]["n"] == 50 and row["step"] == 3 and row["checkpoint"] == "cli"
    # the same images and model as the trainer's own evaluation give the same accuracy
    from genint_fast.train import TrainConfig, build_model, evaluate, load_digits_split
    st = load_checkpoint(out / "checkpoint.pt")
    model = build_model("smallcnn", 10)
    model.load_state_dict(st["model"])
    images, labels = load_digits_split(TrainConfig(**st["config"]), "test-id", 50)
    assert (row["top1"], row["top5"]) == evaluate(model, images, labels)
    assert json.loads((tmp_path / "ev" / "accuracy.json").read_text()) == res
    assert "| cli | 3 |" in (tmp_path / "ev" / "accuracy.md").read_text()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    # the same 40 test images as an image folder give the same accuracy as the built-in split
    from genint_fast.data import export_biased_digits
    export_biased_digits(str(tmp_path / "folder"), rho=0.9, splits=("test-id",),
                         sizes={"test-id": 40})            # the recipe's data: colored, rho 0.9
    assert cli_main([*ev, "--n", "40", "--split", "test-id"]) == 0
    built_in = json.loads(capsys.readouterr().out.strip())["rows"][0]
    assert cli_main([*ev, "--folder", str(tmp_path / "folder" / "test-id")]) == 0
    folder = json.loads(capsys.readouterr().out.strip())
    assert folder["images"]["n"] == 40 and folder["images"]["size"] == 32
    assert (folder["rows"][0]["top1"], folder["rows"][0]["top5"]) == \
        (built_in["top1"], built_in["top5"])


# ---------------------------------------------------------------------------- torchrun DDP
_DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from genint_fast.train import load_config, run_training
    out, *over = sys.argv[1:]
    cfg = load_config(None, over + [f"out={out}", "threads=1"])
    tr, row = run_training(cfg)
    torch.save({"params": tr.model.state_dict(), "row": row,
                "first_batch": tr.data.batch(0)[1]}, Path(out) / f"rank{tr.rank}.pt")
    import torch.distributed as dist
    dist.destroy_process_group()
""")


def test_torchrun_gloo_two_ranks_end_identical(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "ddp_script.py"
    script.write_text(_DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0",
           str(script), str(out), *TINY[1:], "steps=3", "mode=genint", "lambda1=0.2"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=240)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert not torch.equal(r0["first_batch"], r1["first_batch"])      # sharded data
    # parameters (not BN running statistics, which stay per rank) are identical
    names = [k for k in r0["params"] if "running" not in k and "num_batches" not in k]
    assert names and all(torch.equal(r0["params"][k], r1["params"][k]) for k in names)
    assert r0["row"]["loss"] == pytest.approx(r1["row"]["loss"], rel=1e-6)  # all-reduced
    assert (out / "checkpoint.pt").exists() and load_checkpoint(out / "checkpoint.pt")["step"] == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]              # rank 0 only


# ---------------------------------------------------------------------------- image folders
def test_train_from_image_folder(tmp_path, capsys):
    from genint_fast.data import export_biased_digits
    from genint_fast.train.trainer import FolderData
    export_biased_digits(str(tmp_path / "digits"), splits=("train",), sizes={"train": 64})
    root = tmp_path / "digits" / "train"
    over = [*TINY, "steps=3", "mode=stylized", "lambda2=0.5", "transfer_batch_size=2",
            "transfer_steps=[1,1]", "transfer_optimizer=adam", f"data=folder:{root}",
            "image_size=24", f"out={tmp_path / 'run'}"]
    assert cli_main(["train", *over]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and set(summary["final"]) >= {"loss_real", "loss_transferred"}
    # batches are a pure function of (seed, step): two readers agree, steps differ
    a = FolderData(str(root), batch_size=8, seed=1, device="cpu", size=24)
    b = FolderData(str(root), batch_size=8, seed=1, device="cpu", size=24)
    xa, ya = a.batch(9)
    xb, yb = b.batch(9)
    assert xa.shape == (8, 3, 24, 24) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.batch(10)[0], xa) and 0 <= float(xa.min()) <= float(xa.max()) <= 1
    assert a.per_epoch == 8
    with pytest.raises(ValueError, match="is not an existing folder"):
        load_config(None, [f"data=folder:{tmp_path / 'missing'}"])


# ---------------------------------------------------------------------------- every stream
def test_augmentation_reaches_every_stream(tmp_path):
    """The real stream's crop + flip is applied to the intervened and transferred streams (and
    gan-aug's generated stream), seeded per step; augment_generated=false turns it off."""
    common = ["mode=genint-transfer", "lambda2=1", "transfer_batch_size=3",
              "transfer_steps=[2,2]", "transfer_optimizer=adam"]
    on = Trainer(tiny(tmp_path / "a", *common))
    off = Trainer(tiny(tmp_path / "b", *common, "augment_generated=false"))
    a, b = on.make_generated(3), off.make_generated(3)
    for name in ("intervened", "transferred"):
        assert torch.equal(a[name][1], b[name][1])
        assert not torch.equal(a[name][0], b[name][0]), name
        assert torch.equal(a[name][0], on.data.augment_like_real(b[name][0], 3, name)), name
    g = Trainer(tiny(tmp_path / "c", "mode=gan-aug")).make_generated(2)
    g0 = Trainer(tiny(tmp_path / "d", "mode=gan-aug", "augment_generated=false")).make_generated(2)
    assert not torch.equal(g["generated"][0], g0["generated"][0])


@pytest.mark.parametrize("over", [["intervention_style=one", "per_latent=4"],
                                  ["step_ranges=reference", "intervention_mode=set"],
                                  ["control=random-directions"], ["control=matched-norm"]])
def test_intervention_options_run(tmp_path, over):
    row = Trainer(tiny(tmp_path, "mode=genint", "steps=2", "producer=inline", *over)).fit()
    assert row["step"] == 2 and "loss_intervened" in row


def test_intervention_options_refused(tmp_path):
    for over, words in ((["control=random-directions", "mode=erm"], "control"),
                        (["intervention_style=one", "per_latent=9"], "per_latent"),
                        (["step_ranges=table"], "step_ranges"), (["control=x"], "control")):
        with pytest.raises(ValueError, match=words):
            tiny(tmp_path, *over)
