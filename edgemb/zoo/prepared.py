"""A model ready to run: spec, float module, weights and preprocessing, and the float outputs every stage shares.

This sits above the weights modules (catalog, fetch, load): it is what the stages take, and its float-logits
cache lets export, quantize, verify and profile of one deploy run the float PyTorch reference once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.zoo.inference import predict, predict_outputs
from edgemb.zoo.registry import ModelSpec, parse_model_name
from edgemb.zoo.weights.catalog import RANDOM_TAG, REFERENCE_TAGS, named_weights_for
from edgemb.zoo.weights.load import LoadedWeights, load_model


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

    def float_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every raw output of the float model for x (a classifier's: [float_logits(x)]), computed once per array."""
        if not hasattr(self.model, "output_names"):
            return [self.float_logits(x)]
        if self._outputs_cache is None or self._outputs_cache[0] is not x:
            self._outputs_cache = (x, predict_outputs(self.model, x, batch_size=16))  # detectors: big maps
        return self._outputs_cache[1]

    def float_outputs_head(self, x: np.ndarray, n: int) -> list[np.ndarray]:
        """float_outputs of x's first n samples: from the cache when it holds x, else computed for those n alone.

        A warm deploy (every stage cached) needs only a few float outputs for its report: computing all of a
        1,000-photo evaluation set again took most of its minute and a half at 224."""
        cached = self._outputs_cache if hasattr(self.model, "output_names") else self._float_cache
        if cached is not None and cached[0] is x:
            return [o[:n] for o in (cached[1] if isinstance(cached[1], list) else [cached[1]])]
        if not hasattr(self.model, "output_names"):
            return [predict(self.model, x[:n])]
        return predict_outputs(self.model, x[:n], batch_size=16)

    _float_cache: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _outputs_cache: tuple[np.ndarray, list[np.ndarray]] | None = field(default=None, init=False, repr=False,
                                                                       compare=False)


def prepare_model(name_or_spec: str | ModelSpec, weights: str | None = None,
                  sha256: str | None = None) -> PreparedModel:
    """Build and load a model; weights decide resolution and preprocessing unless `@R` overrides the size."""
    spec = parse_model_name(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    model, loaded = load_model(spec, weights, sha256)
    spec, pp = resolved_spec(spec, loaded.preprocessing if loaded else None)
    return PreparedModel(spec, model, loaded, pp)


def resolved_spec(spec: ModelSpec, preprocessing: Preprocessing | None) -> tuple[ModelSpec, Preprocessing]:
    """The spec and preprocessing a model runs at: the weights' preprocessing (None: the family's, else ImageNet's)
    decides the resolution unless the name gave one (`@R`), which then resizes the weights' preprocessing.
    prepare_model and named_spec both resolve through here, so a name resolved from the catalog alone is the one
    a deploy reports (and keys its TVM tuning database by)."""
    pp = preprocessing or spec.info.preprocessing or Preprocessing()
    if spec.resolution_given:
        return spec, pp.at_resolution(spec.resolution)
    return spec.with_resolution(pp.resolution), pp


def named_spec(name_or_spec: str | ModelSpec, weights: str) -> ModelSpec:
    """The spec `prepare_model(name, weights).spec` resolves to for named weights (a catalog tag such as `ref` or
    `imagenet1k_v1`, or `random`), from the catalog alone: no checkpoint is read or fetched. `v2_1.0` with `ref`
    is `v2_1.0@64`, `v2_1.0@224` with `imagenet1k_v1` is `v2_1.0`."""
    spec = parse_model_name(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    tag = "ref" if weights.lower() in REFERENCE_TAGS else weights.lower()
    if tag == RANDOM_TAG:
        return resolved_spec(spec, None)[0]
    named = named_weights_for(spec)
    if tag not in named:
        raise EdgembError(f"{weights!r} is not a named checkpoint of {spec.base_name} "
                          f"(named: {', '.join(sorted(named)) or 'none'})")
    return resolved_spec(spec, named[tag].preprocessing)[0]
