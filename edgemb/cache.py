"""Where downloaded weights and prepared environments live between runs."""

from __future__ import annotations

import os
from pathlib import Path

from edgemb.errors import EdgembError


def cache_dir(*parts: str) -> Path:
    """$EDGEMB_CACHE, else $XDG_CACHE_HOME/edgemb, else ~/.cache/edgemb; sub-folders are created."""
    root = os.environ.get("EDGEMB_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgemb"
    path = base.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgembError(f"edgemb's cache folder {path} cannot be created ({exc.strerror}): set EDGEMB_CACHE to a "
                          "writable folder") from None
    return path
