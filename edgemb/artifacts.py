"""Writing artifacts safely: temp names renamed at the end, hashes, tool versions for manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from edgemb.errors import EdgembError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash used in manifests and for verifying downloads."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path, root: Path | None = None) -> dict[str, Any]:
    """Manifest entry of one artifact: where it is, what it hashes to and how big it is."""
    shown = path.relative_to(root) if root else path
    return {"path": str(shown), "sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file so a reader never sees half a document (nor a stray temp file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgembError(f"cannot write {path} ({exc.strerror}): {_output_hint(path)}") from exc


def _output_hint(path: Path) -> str:
    if path.is_dir():
        return f"it is a folder; give a file name such as {path / 'profile.json'}"
    if not path.parent.is_dir():
        return f"its folder {path.parent} does not exist; create it or choose another path"
    return "choose a writable path"


def check_output_file(path: Path) -> None:
    """Refuse an output file path that cannot be written (a folder, a missing folder) before any work starts."""
    if path.is_dir() or not path.parent.is_dir():
        raise EdgembError(f"cannot write {path}: {_output_hint(path)}")


def ensure_writable_dir(path: Path) -> Path:
    """Create an output folder or explain why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".edgemb-probe-"):
            pass
    except OSError as exc:
        raise EdgembError(f"output folder {path} is not writable ({exc.strerror}): choose another --out") from exc
    return path


@contextlib.contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a scratch folder next to `out_dir`; its files move into `out_dir` only if the block succeeds.

    An interrupted or failed stage therefore never leaves a file that looks finished.
    """
    created = not out_dir.exists()
    ensure_writable_dir(out_dir)
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=out_dir))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, out_dir / item.name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # before the emptiness check below
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of the packages that produced an artifact (part of every cache key)."""
    versions = {}
    for name in ("edgemb", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not-installed"
    return versions
