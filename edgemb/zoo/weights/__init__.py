"""Getting weights into a zoo model, in three modules from the bottom up, with the prepared model above them.

- `catalog`: the named checkpoints (torchvision's ImageNet files, the shipped reference models and their
  manifests) and the default data specs that go with them; no file is read or fetched here.
- `fetch`: where a checkpoint file is on this machine, verified downloads into the cache (lock, sha256).
- `load`: a --weights value turned into a state_dict and strictly loaded into a zoo model; the default weights.
- `edgemb.zoo.prepared` (beside this package, above it): `PreparedModel` and its float-logits cache.

For users' code written against the old single module, this package re-exports their public names on first
use (PEP 562), so `from edgemb.zoo.weights import prepare_model` keeps working. edgemb itself, its scripts and
tests import each name from the module that defines it (tests/test_imports.py checks), and so should new code.
"""

from importlib import import_module
from typing import Any

_HOME = {
    **dict.fromkeys(("NamedWeights", "TORCHVISION_WEIGHTS", "REFERENCE_DIR", "REFERENCE_TAGS", "REFERENCE_MANIFEST",
                     "RANDOM_TAG", "PHOTOS_CALIB", "PHOTOS_EVAL", "REFERENCE_CALIB", "REFERENCE_EVAL",
                     "REFERENCE_CALIBRATION",
                     "reference_entries", "reference_weights", "named_weights_for"),
                    "edgemb.zoo.weights.catalog"),
    **dict.fromkeys(("URL_SCHEMES", "is_url", "normalise_sha256", "torch_checkpoint_dir", "packaged_checkpoint",
                     "local_checkpoint", "weights_status", "link_packaged_checkpoints", "download",
                     "sha256_matches"), "edgemb.zoo.weights.fetch"),
    **dict.fromkeys(("LoadedWeights", "PREPROCESSING_SIDECAR", "default_weights", "read_state_dict",
                     "resolve_weights", "stated_preprocessing", "num_classes_of", "guess_architecture", "load_into",
                     "load_model"), "edgemb.zoo.weights.load"),
    **dict.fromkeys(("PreparedModel", "prepare_model", "resolved_spec", "named_spec"), "edgemb.zoo.prepared"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` when it is first asked for."""
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'edgemb.zoo.weights' has no attribute {name!r}")
