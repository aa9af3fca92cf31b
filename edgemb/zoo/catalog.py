"""The zoo as a table: what `edgemb models` prints and the README's model list is generated from.

Counting parameters and MACs means building every model in torch (seconds on a quiet host, half a minute on
a busy one), so the table is measured once and shipped as catalog.json; `edgemb models` only reads it.
tests/test_hardening.py measures the table again and fails when the file is stale; regenerate it with
`python -m edgemb.zoo.catalog` after changing the zoo or its named weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("catalog.json")


def measure_table(num_classes: int | None = None) -> list[dict[str, Any]]:
    """One row per zoo entry at its default resolution, with params and MACs counted on the built model."""
    from edgemb.zoo.counting import count_macs, count_params
    from edgemb.zoo.registry import all_names, parse_model_name
    from edgemb.zoo.weights.catalog import named_weights_for

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


REFERENCE_MANIFEST = Path(__file__).with_name("reference") / "manifest.json"  # see weights/catalog.py


def _reference_models() -> set[str]:
    """Models with a shipped `ref` checkpoint, read from the manifest (it changes more often than the zoo)."""
    return set(json.loads(REFERENCE_MANIFEST.read_text())["models"]) if REFERENCE_MANIFEST.exists() else set()


def model_table(num_classes: int | None = None) -> list[dict[str, Any]]:
    """The shipped table (no torch import), its `ref` tags read live; measured afresh for another class count."""
    if num_classes is not None or not CATALOG.exists():
        return measure_table(num_classes)
    refs = _reference_models()
    rows = json.loads(CATALOG.read_text())["models"]
    for row in rows:
        tags = set(row["weights"]) - {"ref"} | ({"ref"} if row["name"].split("@")[0] in refs else set())
        row["weights"] = sorted(tags)
    return rows


def write_catalog(path: Path = CATALOG) -> Path:
    """Measure the table and write catalog.json (run after changing the zoo)."""
    from edgemb.artifacts import write_json

    write_json(path, {"note": "written by `python -m edgemb.zoo.catalog`; checked by tests/test_hardening.py",
                      "models": measure_table()})
    return path


if __name__ == "__main__":
    print(f"wrote {write_catalog()}", file=sys.stderr)
