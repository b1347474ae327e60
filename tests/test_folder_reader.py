"""The one image-folder reader (genint_fast.data.folder.ImageFolder) and that it is the only one."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genint_fast.data.folder import ImageFolder

PKG = Path(__file__).resolve().parents[1] / "genint_fast"


def _png(path, value, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(a).save(path)


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "tree"
    for c, base in (("cat", 10), ("dog", 200)):
        for i in range(3):
            _png(root / c / f"{i}.png", base + i)
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    return root


def test_scan_skip_and_decode(tree):
    seen = []
    f = ImageFolder(tree, warn=seen.append, use_cache=False)
    assert f.classes == ["cat", "dog"] and len(f) == 6
    assert f.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert list(f.skipped) == [str(tree / "dog" / "broken.png")]
    (msg,) = seen
    assert msg.startswith(f"skipped 1 unreadable image file(s) of 7 in {tree}, e.g. dog/broken.png (")
    x = f.read(4)
    assert x.dtype == torch.uint8 and x.shape == (3, 10, 12) and int(x[0, 0, 0]) == 201
    r = f.resized(8, [0, 5])
    assert r.shape == (2, 3, 8, 8) and r.dtype == torch.float32
    assert torch.allclose(r[0], torch.full_like(r[0], 10 / 255), atol=1e-6)
    assert torch.allclose(r[1], torch.full_like(r[1], 202 / 255), atol=1e-6)


def test_fixed_classes_and_extra_folders(tree):
    f = ImageFolder(tree, ["dog"], ignore_extra=True, warn=lambda m: None, use_cache=False)
    assert f.classes == ["dog"] and len(f) == 3 and f.labels.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="not in the given class list"):
        ImageFolder(tree, ["dog"], use_cache=False)


def test_nothing_readable_is_one_sentence(tmp_path):
    bad = tmp_path / "bad"
    (bad / "a").mkdir(parents=True)
    (bad / "a" / "x.png").write_bytes(b"no")
    with pytest.raises(ValueError) as e:
        ImageFolder(bad, use_cache=False)
    text = str(e.value)
    assert "none of its image files can be decoded (1 files, e.g. a/x.png" in text
    assert "genint-fast data validate" in text and "\n" not in text


def test_flat_folder_only_when_asked(tmp_path):
    flat = tmp_path / "flat"
    for i in range(2):
        _png(flat / f"{i}.png", 50 * i)
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(flat, use_cache=False)
    f = ImageFolder(flat, flat=True, use_cache=False)
    assert f.classes == ["flat"] and len(f) == 2 and f.labels.tolist() == [0, 0]


def test_no_other_module_opens_image_files():
    """Only the reader (and the validator it uses) opens image files from disk; eval/corruptions
    and eval/corruption_ops decode in-memory buffers of their own (JPEG round trips, the
    frost images shipped with the package)."""
    allowed = {"data/folder.py", "data/validate.py", "eval/corruptions.py",
               "eval/corruption_ops.py"}
    offenders = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).as_posix()
        if rel not in allowed and re.search(r"Image\.open\(", p.read_text()):
            offenders.append(rel)
    assert offenders == []
