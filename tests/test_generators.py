"""Generators: the interface, the offline BigGAN adapter (files, key checks, errors), tiny
configs, and the small 32x32 GAN with its trainer."""
import json
import os
import socket
import time

import pytest
import torch

from genint_fast.generators import (KeyReport, SmallGANConfig, SmallGenerator, GANTrainConfig,
                                    load_biggan, load_generator, load_small_generator,
                                    random_biggan, resolve_biggan_files, save_biggan_folder,
                                    tiny_biggan, train_gan, truncated_latents)
from genint_fast.generators.biggan import BigGANGenerator


@pytest.fixture(scope="module")
def tiny():
    return tiny_biggan(seed=0)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _inputs(gen, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return gen.sample_latents(b, 1.0, generator=g), torch.randint(gen.num_classes, (b,), generator=g)


def test_tiny_biggan_is_finite_in_range(tiny):
    z, y = _inputs(tiny, 6)
    with torch.no_grad():
        x = tiny(z, y, 0.7)
    assert x.shape == (6, 3, 32, 32)
    assert torch.isfinite(x).all()
    assert x.abs().max() <= 1.0
    assert (x[0] - x[1]).abs().max() > 1e-3   # the image depends on z
    assert x[0].std() > 1e-3                  # and is not flat


def test_truncated_latents_bounds_and_seed():
    z = truncated_latents(4000, 16, 0.5, generator=torch.Generator().manual_seed(3))
    assert z.abs().max() <= 1.0 + 1e-6          # t * [-2, 2]
    assert abs(float(z.std()) - 0.5 * 0.8796) < 0.02  # std of TruncNormal(-2, 2) = 0.8796
    again = truncated_latents(4000, 16, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z, again)
    with pytest.raises(ValueError, match="truncation"):
        truncated_latents(2, 16, 0.0)


def test_interface_rejects_bad_inputs(tiny):
    z, y = _inputs(tiny)
    with pytest.raises(ValueError, match="truncation"):
        tiny(z, y, 1.5)
    with pytest.raises(ValueError, match="class ids"):
        tiny(z, y + tiny.num_classes, 1.0)
    with pytest.raises(ValueError, match="class ids"):
        tiny(z, y.float(), 1.0)
    with pytest.raises(ValueError, match="z must have shape"):
        tiny(z[:, :5], y, 1.0)


@pytest.mark.parametrize("which", ["biggan", "small"])
def test_linear_z_map_is_the_layer(tiny, which):
    gen = tiny if which == "biggan" else SmallGenerator(SmallGANConfig(ch=4)).eval()
    W = gen.linear_z_map()
    z, y = _inputs(gen, 5)
    h = gen.layer_activations(z, y)
    h0 = gen.layer_activations(torch.zeros_like(z), y)
    assert W.shape == (h.shape[1], gen.latent_dim)
    torch.testing.assert_close(h - h0, z @ W.T, rtol=1e-4, atol=1e-5)


def test_local_folder_round_trip_is_bit_identical(tiny, tmp_path, no_network):
    folder = save_biggan_folder(tiny, tmp_path / "weights")
    loaded = load_biggan(folder)
    assert loaded.key_report.ok
    ref = tiny.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    z, y = _inputs(tiny, 3)
    with torch.no_grad():
        assert torch.equal(tiny(z, y, 0.5), loaded(z, y, 0.5))


def test_key_mismatch_is_reported(tiny, tmp_path):
    folder = save_biggan_folder(tiny, tmp_path / "w")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state.pop("generator.conv_to_rgb.bias")
    state["generator.not_a_layer.weight"] = torch.zeros(3)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ValueError) as info:
        load_biggan(folder)
    msg = str(info.value)
    assert "missing keys: generator.conv_to_rgb.bias" in msg
    assert "unexpected keys: generator.not_a_layer.weight" in msg
    lenient = load_biggan(folder, strict=False)
    assert lenient.key_report.missing == ["generator.conv_to_rgb.bias"]
    assert lenient.key_report.unexpected == ["generator.not_a_layer.weight"]
    assert not lenient.key_report.ok


def test_shape_mismatch_and_corrupt_file(tiny, tmp_path):
    folder = save_biggan_folder(tiny, tmp_path / "w")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["generator.conv_to_rgb.bias"] = torch.zeros(7)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="do not fit"):
        load_biggan(folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read BigGAN weights"):
        load_biggan(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read BigGAN config"):
        load_biggan(folder)


def test_missing_weights_error_is_immediate_and_names_the_folder(tmp_path, monkeypatch,
                                                                 no_network):
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError) as info:
        load_generator("biggan-deep-128")
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert str(cache / "biggan-deep-128") in msg
    assert "config.json" in msg and "pytorch_model.bin" in msg
    assert "biggan-deep-128-pytorch_model.bin" in msg  # where to obtain it
    # an explicit cache folder wins over the environment variable
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "other")):
        load_biggan("biggan-deep-256", cache_dir=tmp_path / "other")
    # a folder lacking the weights file says which file is missing
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="lacks pytorch_model.bin"):
        load_biggan(tmp_path / "half")
    with pytest.raises(FileNotFoundError, match="not a known name"):
        load_generator(str(tmp_path / "nothing-here"))


def test_package_cache_layout_is_found(tiny, tmp_path, monkeypatch, no_network):
    """Files the package itself downloaded are named sha256(url).sha256(etag)."""
    from pytorch_pretrained_biggan.file_utils import url_to_filename
    from pytorch_pretrained_biggan.model import (PRETRAINED_CONFIG_ARCHIVE_MAP,
                                                 PRETRAINED_MODEL_ARCHIVE_MAP)

    src = save_biggan_folder(tiny, tmp_path / "src")
    cache = tmp_path / "cache"
    cache.mkdir()
    name = "biggan-deep-512"
    for url, f in ((PRETRAINED_MODEL_ARCHIVE_MAP[name], "pytorch_model.bin"),
                   (PRETRAINED_CONFIG_ARCHIVE_MAP[name], "config.json")):
        target = cache / url_to_filename(url, etag='"abc"')
        target.write_bytes((src / f).read_bytes())
        (cache / (target.name + ".json")).write_text(json.dumps({"url": url, "etag": "abc"}))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    config, weights = resolve_biggan_files(name)
    assert weights.parent == cache and not weights.name.endswith(".json")
    gen = load_generator(name)
    assert isinstance(gen, BigGANGenerator) and gen.generator_id == name
    z, y = _inputs(tiny, 2)
    with torch.no_grad():
        assert torch.equal(gen(z, y, 1.0), tiny(z, y, 1.0))


def test_random_specs_are_seeded():
    a = load_generator("random:tiny:3")
    b = load_generator("random:tiny:3")
    c = load_generator("random:tiny:4")
    wa, wb, wc = (g.model.generator.gen_z.weight_orig for g in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    z, y = _inputs(a, 2)
    with torch.no_grad():  # every parameter is seeded (upstream leaves some uninitialised)
        assert torch.equal(a(z, y, 1.0), b(z, y, 1.0))
    assert a.generator_id == "random:tiny:seed=3"
    with pytest.raises(ValueError, match="unknown BigGAN architecture"):
        random_biggan("biggan-deep-64")


def test_key_report_text():
    r = KeyReport(missing=[f"k{i}" for i in range(7)])
    assert "(7 in all)" in str(r) and "..." in str(r)
    assert str(KeyReport()) == "all keys matched"


# ----------------------------------------------------------------------------- small GAN
def _toy_data(n=64, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, 32, 32, generator=g) * 0.4 - 0.2 + (labels.float() / classes)[:, None, None, None] - 0.5
    return images.clamp(-1, 1), labels


TINY_GAN = SmallGANConfig(num_classes=3, latent_dim=8, embed_dim=4, ch=4)


def test_small_gan_trains_and_loss_is_finite(tmp_path):
    images, labels = _toy_data()
    tc = GANTrainConfig(steps=3, batch_size=8, checkpoint_every=0, log_every=0)
    logs = []
    out = train_gan(images, labels, tmp_path / "g.pt", model_config=TINY_GAN, train_config=tc,
                    log=logs.append)
    assert out["steps"] == 3
    assert all(map(lambda v: v == v and abs(v) < 1e6, (out["loss_d"], out["loss_g"])))
    gen = load_small_generator(tmp_path / "g.pt")
    z = gen.sample_latents(5)
    with torch.no_grad():
        x = gen(z, torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, 3, 32, 32) and torch.isfinite(x).all() and x.abs().max() <= 1


def test_small_gan_resume_is_exact(tmp_path):
    images, labels = _toy_data()
    straight = tmp_path / "a.pt"
    resumed = tmp_path / "b.pt"
    kw = dict(model_config=TINY_GAN, log=lambda m: None)
    train_gan(images, labels, straight,
              train_config=GANTrainConfig(steps=4, batch_size=8, checkpoint_every=0), **kw)
    train_gan(images, labels, resumed,
              train_config=GANTrainConfig(steps=2, batch_size=8, checkpoint_every=0), **kw)
    train_gan(images, labels, resumed,
              train_config=GANTrainConfig(steps=4, batch_size=8, checkpoint_every=0), **kw)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4
    for part in ("G", "D", "G_ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]  # atomic writes left nothing


def test_small_gan_rejects_bad_data(tmp_path):
    images, labels = _toy_data()
    tc = GANTrainConfig(steps=1, batch_size=4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_gan(images * 3, labels, tmp_path / "x.pt", model_config=TINY_GAN, train_config=tc)
    with pytest.raises(ValueError, match="labels must be in"):
        train_gan(images, labels + 5, tmp_path / "x.pt", model_config=TINY_GAN, train_config=tc)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        train_gan(images[:, :, :16], labels, tmp_path / "x.pt", model_config=TINY_GAN,
                  train_config=tc)
    with pytest.raises(ValueError, match="loss"):
        GANTrainConfig(loss="wgan")
    assert not (tmp_path / "x.pt").exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="cannot read GAN checkpoint"):
        load_small_generator(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="genint-fast gan"):
        load_small_generator(tmp_path / "absent.pt")


def test_gan_command_on_builtin_digits(tmp_path, monkeypatch):
    from genint_fast.cli import main

    out = tmp_path / "g.pt"
    rc = main(["gan", "--data", "digits:colored", "--out", str(out), "--steps", "2",
               "--batch-size", "4", "--ch", "4", "--latent-dim", "8", "--log-every", "1",
               "--samples", str(tmp_path / "s.png")])
    assert rc == 0 and out.is_file() and (tmp_path / "s.png").is_file()
    gen = load_generator(str(out))
    assert gen.num_classes == 10 and gen.latent_dim == 8
    assert main(["gan", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_small_generator_without_class_batchnorm():
    """class_bn=False: the class enters through gen_z only, so the layer's z-block still gives
    the exact directions and the blocks hold one batch-norm gain/bias set."""
    from genint_fast.directions import discover_svd

    torch.manual_seed(0)
    g = SmallGenerator(SmallGANConfig(class_bn=False)).eval()
    assert g.blocks[0].bn1.gain.weight.shape[0] == 1
    z = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = g(z, torch.tensor([0, 1, 2, 3])), g(z, torch.tensor([3, 2, 1, 0]))
    assert a.shape == (4, 3, 32, 32) and not torch.allclose(a, b)
    assert discover_svd(g, 5).k == 5


def test_small_gan_block_equals_upsample_then_convolve():
    """The small GAN's residual up-block (a NearestUpConv2d, the 1x1 skip before the upsampling)
    computes what BigGAN's layout writes: upsample x2 (nearest), then the 3x3 and 1x1
    convolutions; values and parameter gradients, float64."""
    import torch.nn.functional as F

    from genint_fast.generators.small import GBlock

    torch.manual_seed(0)
    blk = GBlock(6, 4, num_classes=3).double().train()
    x, y = torch.randn(5, 6, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])

    def reference(x, y):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        h = F.conv2d(up(F.relu(blk.bn1(x, y))), blk.conv1.weight, blk.conv1.bias, padding=1)
        h = blk.conv2(F.relu(blk.bn2(h, y)))
        return h + F.conv2d(up(x), blk.skip.weight, blk.skip.bias)

    a = blk(x, y)
    ga = torch.autograd.grad(a.square().sum(), list(blk.parameters()))
    b = reference(x, y)
    gb = torch.autograd.grad(b.square().sum(), list(blk.parameters()))
    torch.testing.assert_close(a, b)
    for p, q in zip(ga, gb):
        torch.testing.assert_close(p, q)
