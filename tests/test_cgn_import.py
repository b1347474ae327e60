"""`genint-fast cgn import`: the CGN authors' released MNIST checkpoints in this package's format.

The authors' files are never committed: the tests build a state dict with the reference's key
names and shapes (as listed from its `mnists/experiments/cgn_colored_MNIST/weights/ckp.pth`) and
random values, and check that every tensor lands where the reference's layer order says."""
import pytest
import torch

from genint_fast.cgn import load_cgn
from genint_fast.cgn.reference import convert_reference_state, import_reference_checkpoint
from genint_fast.cli import main


def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def reference_shapes():
    """The reference checkpoint's 57 keys and shapes (nn.Sequential indices of f_shape,
    f_text1, f_text2)."""
    shapes = {"label_emb.weight": (10, 10),
              "f_shape.0.weight": (4096, 42), "f_shape.0.bias": (4096,),
              "f_shape.4.weight": (32, 64, 3, 3), **_bn("f_shape.5", 32),
              "f_shape.9.weight": (1, 32, 3, 3), **_bn("f_shape.10", 1)}
    for t in ("f_text1", "f_text2"):
        shapes.update({f"{t}.0.weight": (4096, 42), f"{t}.0.bias": (4096,),
                       f"{t}.3.weight": (64, 64, 3, 3), **_bn(f"{t}.4", 64),
                       f"{t}.7.weight": (32, 64, 3, 3), **_bn(f"{t}.8", 32),
                       f"{t}.10.weight": (3, 32, 3, 3), f"{t}.10.bias": (3,),
                       **_bn(f"{t}.11", 3)})
    return shapes


def reference_state(seed=0, steps=48027):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in reference_shapes().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(steps)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.1
    return state


def test_every_reference_tensor_lands_in_its_layer():
    ref = reference_state()
    assert len(ref) == 57
    cgn = convert_reference_state(ref, "colored")
    # the layer order of the reference: linear first, then the convs and norms of each body
    assert torch.equal(cgn.embed.weight, ref["label_emb.weight"])
    assert torch.equal(cgn.shape.fc.weight, ref["f_shape.0.weight"])
    assert torch.equal(cgn.shape.body[1].weight, ref["f_shape.4.weight"])
    assert torch.equal(cgn.shape.body[2].running_var, ref["f_shape.5.running_var"])
    assert torch.equal(cgn.shape.body[6].weight, ref["f_shape.9.weight"])
    assert torch.equal(cgn.shape.body[7].bias, ref["f_shape.10.bias"])
    for ours, theirs in ((cgn.texture, "f_text1"), (cgn.background, "f_text2")):
        assert torch.equal(ours.fc.bias, ref[f"{theirs}.0.bias"])
        assert torch.equal(ours.body[1].weight, ref[f"{theirs}.3.weight"])
        assert torch.equal(ours.body[5].weight, ref[f"{theirs}.7.weight"])
        assert torch.equal(ours.body[8].bias, ref[f"{theirs}.10.bias"])
        assert torch.equal(ours.body[9].running_mean, ref[f"{theirs}.11.running_mean"])
    # nothing of ours is left at its initial value: every tensor came from the file
    assert sum(v.numel() for v in cgn.state_dict().values()) == sum(
        v.numel() for v in ref.values())
    assert not cgn.training


def test_the_converted_model_runs_the_reference_forward():
    """The composite of the converted CGN equals a hand-written forward of the reference's
    layer list on the same weights (shape: linear, reshape, IN, [up, conv, BN, LReLU], IN,
    [up, conv, BN, LReLU], IN, clamp; texture: linear, reshape, [up, conv, BN, LReLU] x 2,
    conv, BN, tanh)."""
    import torch.nn.functional as F

    ref = reference_state(1)
    cgn = convert_reference_state(ref, "colored")
    u = torch.randn(4, 32)
    y = torch.tensor([0, 3, 5, 9])
    h = torch.cat([u, ref["label_emb.weight"][y]], 1)

    def bn(x, p):
        return F.batch_norm(x, ref[f"{p}.running_mean"], ref[f"{p}.running_var"],
                            ref[f"{p}.weight"], ref[f"{p}.bias"], False, 0.0, 1e-5)

    def up_conv_bn(x, conv, norm, bias=None):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.leaky_relu(bn(F.conv2d(x, ref[f"{conv}.weight"], bias, padding=1), norm), 0.2)

    x = F.linear(h, ref["f_shape.0.weight"], ref["f_shape.0.bias"]).view(4, 64, 8, 8)
    x = F.instance_norm(x)
    x = F.instance_norm(up_conv_bn(x, "f_shape.4", "f_shape.5"))
    m = F.instance_norm(up_conv_bn(x, "f_shape.9", "f_shape.10")).clamp(1e-4, 0.9999)
    with torch.no_grad():
        assert torch.allclose(cgn.mask(u, y), m, atol=1e-5)
        t = F.linear(h, ref["f_text1.0.weight"], ref["f_text1.0.bias"]).view(4, 64, 8, 8)
        t = up_conv_bn(up_conv_bn(t, "f_text1.3", "f_text1.4"), "f_text1.7", "f_text1.8")
        t = torch.tanh(bn(F.conv2d(t, ref["f_text1.10.weight"], ref["f_text1.10.bias"],
                                   padding=1), "f_text1.11"))
        assert torch.allclose(cgn.texture(cgn._input(u, y)), t, atol=1e-5)


@pytest.mark.parametrize("variant", ["colored", "double-colored", "wildlife"])
def test_import_command_writes_a_loadable_checkpoint(tmp_path, variant, capsys):
    ref = tmp_path / "ckp.pth"
    torch.save(reference_state(2, steps=44025), ref)
    out = tmp_path / "cgn.pt"
    assert main(["cgn", "import", str(ref), "--variant", variant, "--out", str(out),
                 "--samples", str(tmp_path / "sheet.png")]) == 0
    assert "44025 training steps" in capsys.readouterr().out
    cgn = load_cgn(out)
    assert cgn.steps_trained == 44025 and cgn.config.ch == 64 and cgn.config.out_batchnorm
    assert (tmp_path / "sheet.png").is_file()
    from genint_fast.cgn import CounterfactualSampler

    images, labels, _ = CounterfactualSampler(cgn, batch_size=8, seed=0).sample()
    assert images.shape == (8, 3, 32, 32) and images.abs().max() <= 1
    # a generator-only checkpoint is refused for resuming, in one sentence
    rc = main(["cgn", "--data", "digits:colored", "--out", str(out), "--steps", "1"])
    assert rc == 2 and "cannot be resumed" in capsys.readouterr().err


@pytest.mark.parametrize("edit, msg", [
    (lambda s: s.pop("f_text2.11.bias"), "missing keys"),
    (lambda s: s.update({"f_shape.99.weight": torch.zeros(1)}), "unknown keys"),
    (lambda s: s.update({"f_shape.4.weight": torch.zeros(16, 64, 3, 3)}), "has shape"),
])
def test_a_wrong_state_dict_is_refused_in_one_sentence(edit, msg):
    ref = reference_state()
    edit(ref)
    with pytest.raises(ValueError, match=msg):
        convert_reference_state(ref)


def test_wrong_files_through_the_cli(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    for argv, msg in ((["cgn", "import", str(notes), "--variant", "colored", "--out",
                        str(tmp_path / "a.pt")], "not a readable torch checkpoint"),
                      (["cgn", "import", str(tmp_path / "none.pth"), "--variant", "colored",
                        "--out", str(tmp_path / "b.pt")], "no reference checkpoint")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    torch.save({"G": {"x": torch.zeros(1)}}, tmp_path / "ours.pt")
    assert main(["cgn", "import", str(tmp_path / "ours.pt"), "--variant", "colored",
                 "--out", str(tmp_path / "c.pt")]) == 2
    assert "not a CGN reference checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "c.pt").exists()
    with pytest.raises(ValueError, match="variant"):
        import_reference_checkpoint(tmp_path / "ours.pt", "striped", tmp_path / "d.pt")
