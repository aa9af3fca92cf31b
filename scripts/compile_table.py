"""Compile the reference models for the boards that run here and record every artifact's parity.

Run by `make compile-table`; writes results/compile.json, rendered into the README by `make readme`. Each
model and board is one `edgemb compile --weights ref` (the quantize stage first wherever int8 needs its model).
Evaluation uses all 10,000 Fashion-MNIST test images (TFLite Micro, which runs reference kernels on the
host, uses a seeded 1,000-image subset).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from edgemb import cli
from edgemb.artifacts import tool_versions, write_json
from provenance import measured_on

MODELS = ("v1_0.25", "v2_1.0", "v3l_1.0")
TARGETS = ("x86", "cortex-m7", "intel-ncs2", "intel-npu")
TFLM_EVAL = "fashion-mnist:test:1000"
OUT = Path(__file__).resolve().parent.parent / "results" / "compile.json"
KEEP = ("backend", "precision", "status", "size_bytes", "detail", "parity", "memory", "kernel_precisions",
        "reference_agreement", "fits")


def main(models: list[str]) -> None:
    """Compile each model for each target and merge the rows into results/compile.json."""
    import json

    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    models = models or list(MODELS)
    rows = [r for r in rows if r["model"] not in models]
    stamp = measured_on()
    with tempfile.TemporaryDirectory() as scratch:
        for model in models:
            for target in TARGETS:
                out = Path(scratch) / f"{model}-{target}"
                evaluation = ["--eval", TFLM_EVAL] if target.startswith("cortex-m") else []
                # `edgemb compile` itself, so onnxruntime/TVM int8 is the quantize stage's model as users get it
                if cli.main(["compile", model, "--weights", "ref", "--target", target, *evaluation,
                             "--out", str(out)]) != 0:
                    raise SystemExit(f"edgemb compile {model} --target {target} failed (see above)")
                report = json.loads((out / "compile.json").read_text())
                for artifact in report["artifacts"]:
                    rows.append({"model": model, "target": target, "evaluation": report["evaluation"],
                                 **{k: artifact[k] for k in KEEP if k in artifact}, "measured_on": stamp})
                    print(json.dumps(rows[-1]), flush=True)
    write_json(OUT, {"rows": rows, "tools": tool_versions("torch", "onnxruntime", "openvino", "nncf",
                                                          "litert-torch", "ai-edge-quantizer", "ai-edge-litert",
                                                          "tflite-micro")})


if __name__ == "__main__":
    main(sys.argv[1:])
