"""The MobileNet family built from the papers' setting tables, with torchvision-compatible layouts.

Names are imported on first use (PEP 562), so `edgemb.zoo.catalog` can list the zoo without importing torch.
"""

from importlib import import_module
from typing import Any

_HOME = {"count_macs": "edgemb.zoo.counting", "count_params": "edgemb.zoo.counting",
         "FAMILIES": "edgemb.zoo.registry", "ModelSpec": "edgemb.zoo.registry", "all_names": "edgemb.zoo.registry",
         "build_model": "edgemb.zoo.registry", "parse_model_name": "edgemb.zoo.registry"}

__all__ = ["FAMILIES", "ModelSpec", "all_names", "build_model", "count_macs", "count_params", "parse_model_name"]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` when it is first asked for."""
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'edgemb.zoo' has no attribute {name!r}")
