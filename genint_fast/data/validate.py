"""Scan an image-folder tree and find corrupt or unreadable files, with a cache.

A tree is root/<class>/<...>/<file>.{jpg,jpeg,png} (one sub-folder per class, sorted names give the
class indices, like torchvision's ImageFolder).  Validation opens and decodes every file with
Pillow (JPEGs in draft mode: DCT-domain downscaling, so the whole stream is read but little is
computed) on a thread pool.  Results are cached in a JSON file keyed by relative path, size and
mtime, so a second run only looks at new or changed files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("genint_fast.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHE_VERSION = 1


def scan_image_folder(root: str, classes: list[str] | None = None, *, ignore_extra=False,
                      flat=False):
    """Return (classes, files, labels) for an image-folder tree; files are absolute paths in a
    sorted, deterministic order.  `classes` fixes the class list (e.g. the training set's) so that
    another split maps to the same indices; other class folders are an error unless
    `ignore_extra` (e.g. ObjectNet's classes outside a mapping).  `flat` also accepts a folder
    that holds images but no class sub-folders: one class, named after the folder.  Raises one
    clear error for a missing or empty tree."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist or is not a folder")
    root = os.path.abspath(root)
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if flat and classes is None and not found:
        files = sorted(e.path for e in os.scandir(root)
                       if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"image folder {root!r} has neither class sub-folders nor "
                             ".jpg/.jpeg/.png images")
        return [os.path.basename(root)], files, [0] * len(files)
    if classes is None:
        classes = found
        if not classes:
            raise ValueError(f"image folder {root!r} has no class sub-folders; expected "
                             "root/<class>/<image>.jpg|png")
    else:
        classes = list(classes)
        missing = [c for c in classes if c not in found]
        extra = [c for c in found if c not in classes]
        if extra and not ignore_extra:
            raise ValueError(f"image folder {root!r} has class folder(s) {extra[:3]} that are "
                             "not in the given class list")
        if missing:
            log.warning("image folder %s lacks %d class folder(s), e.g. %s", root,
                        len(missing), missing[:3])
    files, labels = [], []
    for ci, c in enumerate(classes):
        cdir = os.path.join(root, c)
        if not os.path.isdir(cdir):
            continue
        for dirpath, dirnames, filenames in os.walk(cdir, followlinks=True):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, fn))
                    labels.append(ci)
    if not files:
        raise ValueError(f"image folder {root!r} has class folders but no .jpg/.jpeg/.png "
                         "images in them")
    return classes, files, labels


def check_image(path: str) -> str | None:
    """None if Pillow can decode the file fully, else a one-line reason."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                if im.format not in ("JPEG", "PNG"):
                    return f"not a JPEG or PNG file (Pillow sees {im.format})"
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                if im.width < 1 or im.height < 1:
                    return "empty image"
    except Exception as exc:  # noqa: BLE001 - any failure to decode means the file is bad
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


def default_cache_path(root: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    return os.path.join(base, "genint_fast", "validate", f"{key}.json")


def _load_cache(path: str, root: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
        if data.get("version") == CACHE_VERSION and data.get("root") == os.path.abspath(root):
            return data.get("files", {})
    except (OSError, ValueError):
        pass
    return {}


def _save_cache(path: str, root: str, entries: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": CACHE_VERSION, "root": os.path.abspath(root),
                       "files": entries}, fh)
        os.replace(tmp, path)  # atomic: concurrent ranks never read half a file
    except OSError as exc:
        log.warning("could not write the validation cache %s (%s); next run validates again",
                    path, exc)


class ValidationResult:
    """Outcome of `validate_files`: the good files (input order), the bad ones with reasons, and
    how many files were actually decoded (cache misses)."""

    def __init__(self, good, bad, checked):
        self.good: list[str] = good
        self.bad: dict[str, str] = bad
        self.checked: int = checked


def validate_files(root: str, files: list[str], *, cache_path: str | None = None,
                   threads: int = 4, use_cache: bool = True) -> ValidationResult:
    """Find the files among `files` (under `root`) that cannot be decoded.  Cached results are
    reused when a file's size and mtime are unchanged."""
    cache_path = cache_path or default_cache_path(root)
    cache = _load_cache(cache_path, root) if use_cache else {}
    root = os.path.abspath(root)
    entries, todo, stats = {}, [], {}
    bad = {}
    for f in files:
        rel = os.path.relpath(f, root)
        try:
            st = os.stat(f)
        except OSError as exc:
            bad[f] = f"cannot stat: {exc.strerror}"
            continue
        stats[f] = (st.st_size, st.st_mtime_ns)
        hit = cache.get(rel)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            entries[rel] = hit
            if hit[2] is not None:
                bad[f] = hit[2]
        elif st.st_size == 0:
            entries[rel] = [0, st.st_mtime_ns, "empty file"]
            bad[f] = "empty file"
        else:
            todo.append(f)
    if todo:
        with ThreadPoolExecutor(max(1, threads)) as ex:
            reasons = list(ex.map(check_image, todo))
        for f, reason in zip(todo, reasons):
            entries[os.path.relpath(f, root)] = [*stats[f], reason]
            if reason is not None:
                bad[f] = reason
    if use_cache and (todo or len(entries) != len(cache)):
        _save_cache(cache_path, root, entries)
    good = [f for f in files if f not in bad]
    return ValidationResult(good, bad, len(todo))
