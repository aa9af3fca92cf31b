"""The zoo as a table: what `edgemb models` prints and the README's model list is generated from."""

from __future__ import annotations

from typing import Any

from edgemb.zoo.counting import count_macs, count_params
from edgemb.zoo.registry import all_names, parse_model_name
from edgemb.zoo.weights import named_weights_for


def model_table(num_classes: int | None = None) -> list[dict[str, Any]]:
    """One row per zoo entry at its default resolution, with measured params and MACs."""
    rows = []
    for name in all_names():
        spec = parse_model_name(name)
        model = spec.build(num_classes)
        rows.append({
            "name": spec.name,
            "family": spec.info.title,
            "task": spec.info.task,
            "alpha": spec.alpha,
            "resolution": spec.resolution,
            "params": count_params(model),
            "macs": count_macs(model, spec.resolution),
            "weights": sorted(named_weights_for(spec)),
        })
    return rows
