"""Getting weights into a zoo model: local files, verified downloads and named published checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgemb.cache import cache_dir
from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.progress import progress
from edgemb.zoo.registry import FAMILIES, ModelSpec

URL_SCHEMES = ("https", "http", "file")
REFERENCE_DIR = Path(__file__).parent / "reference"
REFERENCE_TAGS = ("ref", "reference")


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


# torchvision's ImageNet checkpoints. torchvision names files by the first 8 hex digits of their sha256
# and torch.hub verifies exactly that prefix; we do the same.
TORCHVISION_WEIGHTS: tuple[NamedWeights, ...] = (
    NamedWeights("v2_1.0", "imagenet1k_v1", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                 "b0353104", 1000, Preprocessing(224, 256), {"top1": 71.878, "top5": 90.286}),
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

    @property
    def preprocessing(self) -> Preprocessing | None:
        """Preprocessing the weights were trained with, when known."""
        return self.named.preprocessing if self.named else None


def reference_entries() -> dict[str, dict]:
    """The trained reference models shipped with edgemb (see `make reference-models`), by model name."""
    manifest = REFERENCE_DIR / "manifest.json"
    return json.loads(manifest.read_text())["models"] if manifest.exists() else {}


def reference_weights(spec: ModelSpec) -> NamedWeights | None:
    """The shipped reference checkpoint of a model as a named entry, if there is one."""
    entry = reference_entries().get(spec.base_name)
    if entry is None:
        return None
    return NamedWeights(spec.base_name, "ref", (REFERENCE_DIR / entry["file"]).as_uri(), entry["sha256"],
                        entry["num_classes"], Preprocessing.from_dict(entry["preprocessing"]),
                        {"top1": 100 * entry["accuracy"]["top1"], "top5": 100 * entry["accuracy"]["top5"]})


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


def download(url: str, sha256: str, dest_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Fetch a file once into the cache and verify its sha256 (a full hash or a prefix of >= 8 digits)."""
    expected = _normalise_sha256(sha256)
    name = Path(urllib.parse.urlparse(url).path).name or "weights.bin"
    folder = dest_dir or cache_dir("weights")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest().startswith(expected)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` or `.pt`/`.pth` state_dict; pickles that need code to load are refused."""
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
        have = ", ".join(sorted(reference_entries())) or "none (run `make reference-models`)"
        raise EdgembError(f"there is no reference checkpoint for {spec.base_name}; reference models: {have}")
    if tag in named:
        entry = named[tag]
        if entry.url.startswith("file:"):
            path = Path(urllib.request.url2pathname(urllib.parse.urlparse(entry.url).path))
            if not path.is_file() or not sha256_matches(path, entry.sha256):
                raise EdgembError(f"{path} is missing or does not match its recorded sha256: reinstall edgemb "
                                  "or rerun `make reference-models`")
        else:
            path = download(entry.url, entry.sha256)
        return LoadedWeights(read_state_dict(path), entry.url, entry.sha256, entry)
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
    if sha256 and not sha256_matches(path, _normalise_sha256(sha256)):
        raise EdgembError(f"sha256 of {path} does not match {sha256}")
    state = read_state_dict(path)
    from edgemb.artifacts import sha256_file

    return LoadedWeights(state, str(path), sha256_file(path))


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
    """Build a zoo model and, when asked, fill it with weights (class count taken from the checkpoint)."""
    if weights is None:
        return spec.build(num_classes), None
    loaded = resolve_weights(weights, spec, sha256)
    classes = num_classes_of(loaded.state_dict, spec) or num_classes
    model = spec.build(classes)
    load_into(model, loaded.state_dict, spec, loaded.source)
    return model.eval(), loaded
