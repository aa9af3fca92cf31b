"""`make ethos-u-table`: Vela's estimates for the zoo's small classifiers on each Ethos-U board (results/ethos_u.json).

    python scripts/ethos_u_table.py [MODEL@RES ...]     (default: the small models at 96, 128 and 160, the three
                                                         smallest at 224 too; named
                                                         models replace their rows and keep the others)

Each entry is built as `edgemb models` lists it (1000-class head), int8-quantized exactly as a deploy does
(the tflite/tflm/vela int8 TFLite), then compiled by Vela for each board file whose backends include `vela`.
The weights are untrained (BatchNorm statistics randomised so activations have realistic ranges): Vela's
time and memory follow the layer shapes, and its weight compression the weight values, so one trained
model (torchvision's ImageNet MobileNetV2, when it is on this machine) is compiled both ways as a check.
Every number is Vela's performance-model estimate, not a measurement; every row records the commit and the
host that produced it as every results script does (`measured_on`, scripts/provenance.py); Vela's output does
not depend on the host, but the record says where it was made.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from edgemb.artifacts import write_json
from edgemb.backends.base import BuildInputs
from edgemb.backends.vela_backend import ESTIMATE_LABEL, VelaBackend
from edgemb.targets import all_targets
from edgemb.zoo.counting import count_macs, count_params
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights.catalog import named_weights_for
from edgemb.zoo.weights.fetch import local_checkpoint
from provenance import measured_on

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "ethos_u.json"
MODELS = ("v1_0.25", "v1_0.5", "v2_0.35", "v2_0.5", "v3s_0.75", "v3s_1.0")
RESOLUTIONS = (96, 128, 160)
AT_224 = ("v1_0.25@224", "v2_0.35@224", "v3s_0.75@224")  # the full ImageNet resolution for the smallest ones
CHECK = ("v2_1.0@96", "imagenet1k_v1")  # trained vs untrained weights, same shapes
CALIBRATION_SAMPLES = 16


def randomise_statistics(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics so an untrained network's activations vary like a trained one's."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=gen))
                module.bias.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return model.eval()


def build_inputs(name: str, weights: str, scratch: Path) -> tuple[BuildInputs, dict]:
    """The model's int8 TFLite inputs (built once, shared by every board) and its zoo facts."""
    prepared = prepare_model(name, weights)
    if weights == "random":
        randomise_statistics(prepared.model)
    res = prepared.spec.resolution
    calibration = np.random.default_rng(0).standard_normal((CALIBRATION_SAMPLES, 3, res, res)).astype(np.float32)
    folder = scratch / f"{name}-{weights}".replace("@", "_")
    folder.mkdir()
    facts = {"model": prepared.spec.name, "resolution": res, "classes": prepared.num_classes,
             "weights": "untrained (BatchNorm statistics randomised)" if weights == "random" else weights,
             "params": count_params(prepared.model), "macs": count_macs(prepared.model, res)}
    return BuildInputs(prepared, folder / "unused.onnx", calibration, folder, folder), facts


def board_row(inputs: BuildInputs, target, facts: dict, scratch: Path, stamp: dict) -> dict:
    """One model on one board: Vela's estimate, memory against the board, fit and operator split."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    row = {**facts, "target": target.name, "board": target.board, **stamp}
    try:
        record = VelaBackend().build(inputs, target, "int8", out).record(out)
    except Exception as exc:  # a model Vela cannot compile is a row too
        return {**row, "status": "failed", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
    m = record["memory"]
    return {**row, "status": record["status"], "fits": record["fits"], "detail": record.get("detail", ""),
            "estimate": record["estimate"], "npu_split": record["npu_split"],
            "memory": {k: m[k] for k in ("flash_bytes", "arena_bytes", "npu_cache_bytes", "weights_area",
                                         "feature_map_area", "needs", "board")}}


def main() -> None:
    names = sys.argv[1:] or [*(f"{m}@{r}" for m in MODELS for r in RESOLUTIONS), *AT_224]
    boards = [t for t in all_targets().values() if "vela" in t.backends]
    stamp = {"measured_on": measured_on(), "tools": {"ethos-u-vela": version("ethos-u-vela"),
                                                     "ai-edge-quantizer": version("ai-edge-quantizer")}}
    rows, started = [], time.perf_counter()
    jobs = [(name, "random") for name in names]
    check = None
    if not sys.argv[1:] and local_checkpoint(named_weights_for(prepare_model(CHECK[0], "random").spec)[CHECK[1]]):
        jobs += [(CHECK[0], "random"), CHECK]
        check = CHECK
    with tempfile.TemporaryDirectory(prefix="edgemb-ethos-u-") as tmp:
        scratch = Path(tmp)
        for i, (name, weights) in enumerate(jobs):
            print(f"[{i + 1}/{len(jobs)}] {name} ({weights}), {time.perf_counter() - started:.0f} s", flush=True)
            inputs, facts = build_inputs(name, weights, scratch)
            for target in boards:
                row = board_row(inputs, target, facts, scratch, stamp)
                row["role"] = "check" if check and name == check[0] else "zoo"
                rows.append(row)
                est = row.get("estimate", {}).get("inference_ms")
                print(f"   {target.name:<14} {row['status']:<13} {est if est is not None else '-'} ms", flush=True)
    if sys.argv[1:] and OUT.exists():  # named models replace their own rows and keep the others
        redone = {(r["model"], r["target"], r["role"]) for r in rows}
        rows = [r for r in json.loads(OUT.read_text())["rows"]
                if (r["model"], r["target"], r.get("role", "zoo")) not in redone] + rows
    write_json(OUT, {"note": "written by scripts/ethos_u_table.py (make ethos-u-table); every time is "
                             f"{ESTIMATE_LABEL}, not a measurement", "vela": version("ethos-u-vela"),
                     "boards": {t.name: {"board": t.board, **(t.npu or {}), "memory": t.memory} for t in boards},
                     "rows": rows})
    print(f"wrote {OUT} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
