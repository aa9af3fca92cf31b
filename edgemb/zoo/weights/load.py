"""Reading a checkpoint into a zoo model: --weights values, state_dict files, and a one-line error on a misfit.

A --weights value is a named tag (catalog), a URL (fetch) or a local file; the file is read without running
pickled code, unwrapped from the usual containers, and strictly loaded, or the error guesses which zoo
architecture the checkpoint was made for.
"""

from __future__ import annotations

import pickle
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.zoo.registry import FAMILIES, ModelSpec
from edgemb.zoo.weights.catalog import (
    RANDOM_TAG,
    REFERENCE_TAGS,
    NamedWeights,
    named_weights_for,
    reference_entries,
)
from edgemb.zoo.weights.fetch import (
    download,
    is_url,
    local_checkpoint,
    normalise_sha256,
    sha256_matches,
    torch_checkpoint_dir,
)

PREPROCESSING_SIDECAR = ".preprocess.toml"


@dataclass
class LoadedWeights:
    """A state_dict plus where it came from, for manifests and error messages."""

    state_dict: dict[str, torch.Tensor]
    source: str
    sha256: str
    named: NamedWeights | None = None
    stated_preprocessing: Preprocessing | None = None  # from a `.preprocess.toml` beside a user checkpoint
    preprocessing_source: str | None = None

    @property
    def preprocessing(self) -> Preprocessing | None:
        """Preprocessing the weights were trained with, when known."""
        if self.stated_preprocessing is not None:
            return self.stated_preprocessing
        return self.named.preprocessing if self.named else None


def default_weights(spec: ModelSpec) -> tuple[str, str | None]:
    """The weights a command uses when none are given: ImageNet when on this machine, else `ref`, never random.

    Returns the tag and a one-line note for the user when it fell back to the reference model.
    """
    named = named_weights_for(spec)
    for tag, entry in named.items():
        if tag != "ref" and local_checkpoint(entry) is not None:
            return tag, None
    if "ref" in named:
        published = [t for t in named if t != "ref"]
        why = (f"its ImageNet weights ({', '.join(published)}) are not on this machine" if published
               else "it has no published ImageNet weights")
        trained_on = (named["ref"].calibration or "").split(":")[0]  # fashion-mnist, or synthdet for tasks
        data = "Fashion-MNIST" if trained_on in ("fashion-mnist", "") else trained_on
        return "ref", (f"note: {spec.base_name}: {why}; using the {data} reference model (--weights ref). "
                       "Pass --weights to choose.")
    raise EdgembError(
        f"{spec.base_name} has no weights on this machine (no reference model, no ImageNet checkpoint in "
        f"{torch_checkpoint_dir()}): pass --weights FILE, URL or a named checkpoint, or --weights {RANDOM_TAG} "
        "for an untrained model"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` or `.pt`/`.pth` state_dict; pickles that need code to load are refused."""
    if path.is_dir():
        raise EdgembError(f"weights {path} is a folder: pass the checkpoint file in it (.pt, .pth or .safetensors)")
    if not path.is_file():
        raise EdgembError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise EdgembError(f"{path} is not a readable safetensors file ({exc}); it may be truncated") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights only" in str(exc).lower():
                raise EdgembError(
                    f"{path} contains pickled code, which edgemb refuses to execute (weights_only=True); "
                    "re-save it with torch.save(model.state_dict(), path) or convert it to .safetensors"
                ) from exc
            raise EdgembError(f"{path} is not a readable PyTorch checkpoint ({exc}); it may be corrupt") from exc
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
            first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0].split(". ")[0]
            raise EdgembError(
                f"{path} is not a readable PyTorch checkpoint ({first_line}); it may be truncated or corrupt"
            ) from exc
    return _unwrap_state_dict(state, path)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Accept the common wrappers ({'state_dict': ...}, {'model': ...}) and DataParallel prefixes."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgembError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    # fp16/bf16 checkpoints (such as our reference models) run as float32 models.
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}


def resolve_weights(weights: str, spec: ModelSpec, sha256: str | None = None) -> LoadedWeights:
    """Turn a --weights value (named tag, URL or path) into a state_dict with its provenance."""
    named = named_weights_for(spec)
    tag = "ref" if weights.lower() in REFERENCE_TAGS else weights.lower()
    if tag == "ref" and "ref" not in named:
        known = reference_entries()
        have = ", ".join(sorted(known)) or "none (run `make reference-models`)"
        raise EdgembError(f"there is no reference checkpoint for {spec.base_name}; reference models: {have}")
    if tag in named:
        entry = named[tag]
        if entry.url.startswith("file:"):
            path = Path(urllib.request.url2pathname(urllib.parse.urlparse(entry.url).path))
            if not path.is_file() or not sha256_matches(path, entry.sha256):
                raise EdgembError(f"{path} is missing or does not match its recorded sha256: reinstall edgemb "
                                  "or rerun `make reference-models`")
        else:
            local = local_checkpoint(entry)
            path = local[0] if local else download(entry.url, entry.sha256)
        return LoadedWeights(read_state_dict(path), entry.url, entry.sha256, entry,
                             preprocessing_source=f"weights entry {spec.base_name} {entry.tag}")
    if is_url(weights):
        url, _, fragment = weights.partition("#")
        if fragment.startswith("sha256="):
            sha256 = sha256 or fragment[len("sha256="):]
        if not sha256:
            raise EdgembError(f"downloading {url} needs its expected hash: add --sha256 HEX (or #sha256=HEX)")
        path = download(url, sha256)
        return LoadedWeights(read_state_dict(path), url, normalise_sha256(sha256))
    path = Path(weights).expanduser()
    if not path.exists():
        tags = ", ".join(sorted(named)) or "none for this model"
        raise EdgembError(
            f"--weights {weights!r} is neither an existing file, a URL, nor a named checkpoint of {spec.base_name} "
            f"(named: {tags})"
        )
    if path.is_dir():
        raise EdgembError(f"--weights {path} is a folder: pass the checkpoint file in it (.pt, .pth or .safetensors)")
    if sha256 and not sha256_matches(path, normalise_sha256(sha256)):
        raise EdgembError(f"sha256 of {path} does not match {sha256}")
    state = read_state_dict(path)
    from edgemb.artifacts import sha256_file

    stated, where = stated_preprocessing(path)
    return LoadedWeights(state, str(path), sha256_file(path), None, stated, where)


def stated_preprocessing(weights_path: Path) -> tuple[Preprocessing | None, str]:
    """Preprocessing a user states in `<weights stem>.preprocess.toml` beside the checkpoint, if present."""
    sidecar = weights_path.with_name(weights_path.name.split(".")[0] + PREPROCESSING_SIDECAR)
    if not sidecar.is_file():
        return None, "default (ImageNet: 224 crop of 256, mean/std, RGB)"
    from edgemb.data.preprocess import read_preprocessing_toml

    return read_preprocessing_toml(sidecar), str(sidecar)


def num_classes_of(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> int | None:
    """Number of classes the checkpoint's head predicts, or None if it has no head of this family."""
    head = state_dict.get(spec.info.head_weight_key)
    if head is None or head.ndim not in (2, 4) or (head.ndim == 4) == (spec.info.task == "classification"):
        return None
    return int(head.shape[0]) // spec.info.head_divisor


def guess_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Which zoo model a checkpoint fits exactly, for error hints."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for family in FAMILIES.values():
        head = state_dict.get(family.head_weight_key)
        if head is None or head.ndim != 2:
            continue
        for alpha in family.alphas:
            candidate = ModelSpec(family.key, alpha).build(int(head.shape[0]))
            if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
                return f"{family.key}_{alpha}"
    return None


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], spec: ModelSpec, source: str) -> None:
    """Strictly load a state_dict, or explain in one line how the checkpoint differs from the model."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        guess = guess_architecture(state_dict)
        hint = f"it looks like a {guess} checkpoint" if guess else "is it for another architecture or width?"
        example = (missing or unexpected or mismatched)[0]
        raise EdgembError(
            f"checkpoint {source} does not fit {spec.base_name}: {len(missing)} missing keys, {len(unexpected)} "
            f"unexpected keys, {len(mismatched)} shape mismatches (first: {example}); {hint}"
        )
    model.load_state_dict(state_dict, strict=True)


def load_model(spec: ModelSpec, weights: str | None = None, sha256: str | None = None,
               num_classes: int | None = None) -> tuple[nn.Module, LoadedWeights | None]:
    """Build a zoo model and fill it with weights (class count taken from the checkpoint).

    No weights means the default (ImageNet when on this machine, else `ref`); random initialisation only when
    asked for with `random`, so no command ever silently reports numbers of an untrained network.
    """
    if weights is None:
        weights = default_weights(spec)[0]
    if weights.lower() == RANDOM_TAG:
        return spec.build(num_classes), None
    loaded = resolve_weights(weights, spec, sha256)
    classes = num_classes_of(loaded.state_dict, spec) or num_classes
    model = spec.build(classes)
    load_into(model, loaded.state_dict, spec, loaded.source)
    return model.eval(), loaded
