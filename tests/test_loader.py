"""Image-folder loaders (DALI and torch): epoch coverage, labels, corrupt files, sharding, seeds,
validation cache, errors."""
import logging
import os

import numpy as np
import pytest
import torch

from genint_fast.data.loader import dali_available, make_loader
from genint_fast.data.validate import scan_image_folder, validate_files

needs_dali = pytest.mark.skipif(not dali_available(), reason="needs NVIDIA DALI "
                                "(the optional extra: pip install genint-fast[dali])")
LOADERS = [pytest.param("dali", marks=needs_dali), "torch"]
N_VALID = 37  # valid images in the tree below


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/<class>/...: PNGs and JPEGs of varied sizes in 4 classes, one corrupt JPEG, one
    empty class folder, and a non-image file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    expected = {}
    classes = ["ant", "bee", "cat", "dog", "empty"]
    k = 0
    for ci, c in enumerate(classes[:4]):
        os.makedirs(root / c)
        n = 10 if ci < 3 else N_VALID - 30
        for j in range(n):
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            ext = "png" if j % 2 else "jpg"
            sub = root / c / ("nested" if j == 3 else "")
            os.makedirs(sub, exist_ok=True)
            p = sub / f"im{j}.{ext}"
            img.save(p)
            expected[str(p)] = ci
            k += 1
    os.makedirs(root / "empty")
    with open(root / "bee" / "broken.jpg", "wb") as fh:  # header only: truncated
        fh.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40)
    with open(root / "cat" / "notes.txt", "w") as fh:
        fh.write("not an image")
    assert k == N_VALID
    return str(root), classes, expected


def _epoch(loader):
    idx, labels, shapes = [], [], set()
    for x, y, i in loader:
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] == 3
        assert torch.isfinite(x).all()
        shapes.add(tuple(x.shape[2:]))
        idx += i.tolist()
        labels += y.tolist()
    return idx, labels, shapes


def _mk(tree, loader, tmp_path, **kw):
    root, _, _ = tree
    kw.setdefault("batch_size", 8)
    kw.setdefault("size", 24)
    kw.setdefault("num_threads", 2 if loader == "dali" else 0)
    return make_loader(root, loader=loader, return_index=True,
                       cache_path=str(tmp_path / "cache.json"), **kw)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("augment", ["standard", "additional", "none"])
def test_every_valid_image_once_per_epoch_with_its_label(tree, loader, augment, tmp_path,
                                                         caplog):
    root, classes, expected = tree
    with caplog.at_level(logging.WARNING, logger="genint_fast.data"):
        ld = _mk(tree, loader, tmp_path, augment=augment)
    # The corrupt file is skipped and reported, the empty class is kept (and reported).
    assert ld.classes == classes
    assert list(ld.skipped) == [os.path.join(root, "bee", "broken.jpg")]
    assert "skipped 1 unreadable image file(s)" in caplog.text
    assert "have no valid images: ['empty']" in caplog.text
    assert ld.num_files == N_VALID and len(ld) == 5
    for _ in range(2):
        idx, labels, shapes = _epoch(ld)
        assert sorted(idx) == list(range(N_VALID))  # each valid file exactly once
        assert shapes == {(24, 24)}
        for i, y in zip(idx, labels):
            assert expected[ld.files[i]] == y
    assert ld.epoch == 2


@pytest.mark.parametrize("loader", LOADERS)
def test_two_shards_cover_the_set_without_overlap(tree, loader, tmp_path):
    shards = [_mk(tree, loader, tmp_path, shard_id=r, num_shards=2, seed=5) for r in range(2)]
    for _ in range(2):  # every epoch (DALI moves shards between epochs)
        a, _, _ = _epoch(shards[0])
        b, _, _ = _epoch(shards[1])
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(N_VALID))
        assert {len(a), len(b)} == {N_VALID // 2, N_VALID - N_VALID // 2}


@pytest.mark.parametrize("loader", LOADERS)
def test_same_seed_same_order_other_seed_differs(tree, loader, tmp_path):
    def orders(seed):
        ld = _mk(tree, loader, tmp_path, seed=seed, augment="none")
        return [_epoch(ld)[0] for _ in range(2)]

    a, b, c = orders(11), orders(11), orders(12)
    assert a == b
    assert a != c
    assert a[0] != a[1]  # a new order every epoch


@pytest.mark.parametrize("loader", LOADERS)
def test_same_seed_same_augmented_pixels_with_two_threads(tree, loader, tmp_path):
    def pixels(seed):
        ld = _mk(tree, loader, tmp_path, seed=seed, augment="additional", num_threads=2)
        return torch.cat([x for x, _, _ in ld])

    a, b, c = pixels(3), pixels(3), pixels(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("loader", LOADERS)
def test_drop_last_drops_the_partial_batch(tree, loader, tmp_path):
    ld = _mk(tree, loader, tmp_path, drop_last=True)
    idx, _, _ = _epoch(ld)
    assert len(ld) == N_VALID // 8 and len(idx) == (N_VALID // 8) * 8
    assert len(set(idx)) == len(idx)


@pytest.mark.parametrize("loader", LOADERS)
def test_no_shuffle_gives_file_order(tree, loader, tmp_path):
    ld = _mk(tree, loader, tmp_path, shuffle=False, augment="none")
    assert _epoch(ld)[0] == list(range(N_VALID))


@needs_dali
def test_dali_and_torch_decode_and_normalise_alike(tmp_path):
    """Without augmentation both loaders give the same tensors up to resampling differences
    (48x48 PNGs of smooth images resized to 32x32: shorter side to 32 / 0.875, centre crop)."""
    from genint_fast.data.digits import make_biased_digits
    from genint_fast.data.export import save_image_folder

    ds = make_biased_digits("double-colored", "test-id", 0.9, seed=0, n=40)
    save_image_folder(ds, str(tmp_path / "d"), size=48)
    out = {}
    for name in ("dali", "torch"):
        ld = make_loader(str(tmp_path / "d"), loader=name, batch_size=16, size=32,
                         augment="none", shuffle=False, num_threads=1,
                         cache_path=str(tmp_path / "c.json"))
        out[name] = torch.cat([x for x, _ in ld])
    # Normalised units: 1/255 of the range is ~0.017.  The centre crops may sit one pixel
    # apart (rounding of (37 - 32) / 2), so compare the inner 28x28 at the best shift.
    a = out["dali"][..., 2:-2, 2:-2]
    diffs = [(a - out["torch"][..., 2 + dy:30 + dy, 2 + dx:30 + dx]).abs().mean().item()
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert min(diffs) < 0.03, diffs


@needs_dali
def test_dali_augmentations_change_pixels(tree, tmp_path):
    base = torch.cat([x for x, _, _ in _mk(tree, "dali", tmp_path, augment="none",
                                              shuffle=False)])
    aug = torch.cat([x for x, _, _ in _mk(tree, "dali", tmp_path, augment="additional",
                                             shuffle=False)])
    assert base.shape == aug.shape
    assert (base - aug).abs().mean() > 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@needs_dali
def test_dali_mixed_decoding_on_gpu(tree, tmp_path):
    root, _, expected = tree
    ld = _mk(tree, "dali", tmp_path, device="cuda")
    idx, labels, shapes = _epoch(ld)
    x, y, i = next(iter(ld))
    assert x.is_cuda and y.is_cuda
    assert sorted(idx) == list(range(N_VALID))
    for j, lab in zip(idx, labels):
        assert expected[ld.files[j]] == lab


def test_validation_is_cached_and_notices_changes(tree, tmp_path):
    root, _, _ = tree
    cache = str(tmp_path / "v.json")
    _, files, _ = scan_image_folder(root)
    assert len(files) == N_VALID + 1  # the .txt is not an image file
    r1 = validate_files(root, files, cache_path=cache)
    assert r1.checked == N_VALID + 1 and len(r1.bad) == 1 and len(r1.good) == N_VALID
    r2 = validate_files(root, files, cache_path=cache)
    assert r2.checked == 0 and r2.bad == r1.bad and r2.good == r1.good
    # Corrupt a copy of the tree's file list: a changed file (size/mtime) is checked again.
    import shutil

    root2 = tmp_path / "copy"
    shutil.copytree(root, root2)
    _, files2, _ = scan_image_folder(str(root2))
    cache2 = str(tmp_path / "v2.json")
    validate_files(str(root2), files2, cache_path=cache2)
    victim = files2[0]
    with open(victim, "r+b") as fh:
        fh.truncate(30)
    r3 = validate_files(str(root2), files2, cache_path=cache2)
    assert r3.checked == 1 and victim in r3.bad


def test_torch_loader_survives_a_file_that_breaks_after_validation(tree, tmp_path, caplog):
    import shutil

    root2 = tmp_path / "copy"
    shutil.copytree(tree[0], root2)
    ld = make_loader(str(root2), loader="torch", batch_size=8, size=24, num_threads=0,
                     return_index=True, cache_path=str(tmp_path / "c.json"))
    victim = ld.files[4]
    with open(victim, "wb") as fh:
        fh.write(b"garbage")
    with caplog.at_level(logging.WARNING, logger="genint_fast.data"):
        idx, _, _ = _epoch(ld)
    assert sorted(idx) == [i for i in range(N_VALID) if i != 4]
    assert "skipped unreadable image" in caplog.text


@pytest.mark.parametrize("loader", LOADERS)
def test_folder_errors_are_one_clear_sentence(loader, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_loader(str(tmp_path / "missing"), loader=loader, batch_size=4)
    (tmp_path / "noclasses").mkdir()
    (tmp_path / "noclasses" / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="has no class sub-folders"):
        make_loader(str(tmp_path / "noclasses"), loader=loader, batch_size=4)
    (tmp_path / "noimages" / "c1").mkdir(parents=True)
    (tmp_path / "noimages" / "c2").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png images"):
        make_loader(str(tmp_path / "noimages"), loader=loader, batch_size=4)
    (tmp_path / "allbad" / "c1").mkdir(parents=True)
    (tmp_path / "allbad" / "c1" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of its image files can be decoded"):
        make_loader(str(tmp_path / "allbad"), loader=loader, batch_size=4,
                    cache_path=str(tmp_path / "c.json"))


@pytest.mark.parametrize("kw, err, msg", [
    (dict(loader="pillow"), ValueError, "loader must be one of"),
    (dict(batch_size=0), ValueError, "batch_size must be"),
    (dict(size=0), ValueError, "size must be"),
    (dict(augment="heavy"), ValueError, "augment must be one of"),
    (dict(shard_id=2, num_shards=2), ValueError, "shard_id must be"),
    (dict(num_shards=0), ValueError, "num_shards must be"),
    (dict(crop_fraction=1.5), ValueError, "crop_fraction must be"),
])
def test_bad_arguments(tree, kw, err, msg):
    args = dict(loader="torch", batch_size=4)
    args.update(kw)
    with pytest.raises(err, match=msg):
        make_loader(tree[0], **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_device_without_gpu_is_a_clear_error(tree):
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        make_loader(tree[0], loader="torch", batch_size=4, device="cuda")


def test_classes_argument_aligns_splits(tree, tmp_path):
    root, classes, _ = tree
    with pytest.raises(ValueError, match="not in the given class list"):
        make_loader(root, loader="torch", batch_size=4, classes=["ant", "bee"])
    ld = make_loader(root, loader="torch", batch_size=4, classes=classes + ["zebra"],
                     cache_path=str(tmp_path / "c.json"))
    assert ld.classes[-1] == "zebra" and ld.num_files == N_VALID


def test_biased_digits_export_runs_through_the_loaders(tmp_path):
    from genint_fast.data.digits import make_biased_digits
    from genint_fast.data.export import export_biased_digits

    export_biased_digits(str(tmp_path / "d"), variant="colored", rho=0.9, seed=0,
                         splits=("test-ood",), sizes={"test-ood": 50})
    ds = make_biased_digits("colored", "test-ood", 0.9, seed=0, n=50)
    names = ["dali", "torch"] if dali_available() else ["torch"]
    for name in names:
        ld = make_loader(str(tmp_path / "d" / "test-ood"), loader=name, batch_size=16, size=32,
                         augment="none", crop_fraction=1.0, shuffle=False, return_index=True,
                         mean=(0, 0, 0), std=(1, 1, 1), num_threads=1,
                         cache_path=str(tmp_path / "c.json"))
        x, y, i = (torch.cat(t) for t in zip(*list(ld)))
        # File i of the sorted tree is sample number int(basename): pixels and labels match.
        order = [int(os.path.basename(f)[:-4]) for f in ld.files]
        assert torch.equal(y, ds.labels[order][i])
        assert torch.allclose(x, ds.images[order][i].float() / 255, atol=1e-6)


@needs_dali
def test_image_modes_decode_alike(tmp_path):
    """Greyscale, palette, RGBA, LA, 16-bit PNGs and greyscale, CMYK, progressive JPEGs: both
    loaders read them as RGB and agree to a few grey levels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "b").mkdir()
    a, b = tmp_path / "t" / "a", tmp_path / "t" / "b"
    im.convert("L").save(a / "gray.jpg")
    im.convert("L").save(a / "gray.png")
    im.convert("RGBA").save(a / "rgba.png")
    im.convert("P").save(a / "pal.png")
    im.convert("CMYK").save(b / "cmyk.jpg")
    im.save(b / "prog.jpg", progressive=True)
    im.convert("LA").save(b / "la.png")
    Image.fromarray(rng.integers(0, 65535, (30, 40)).astype(np.uint16)).save(b / "g16.png")
    out = {}
    for name in ("dali", "torch"):
        ld = make_loader(str(tmp_path / "t"), loader=name, batch_size=4, size=24,
                         augment="none", crop_fraction=1.0, shuffle=False, num_threads=1,
                         mean=(0, 0, 0), std=(1, 1, 1), cache_path=str(tmp_path / "c.json"))
        assert not ld.skipped and ld.num_files == 8
        out[name] = torch.cat([x for x, _ in ld])
    assert out["dali"].shape == (8, 3, 24, 24)
    assert (out["dali"] - out["torch"]).abs().max() <= 5 / 255
