"""`make deploy-table`: run the README's deploys and keep their reports (without raw samples) for the README.

    python scripts/deploy_table.py [TARGET:MODEL ...]   (default: the three deploys the README shows)
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgemb.artifacts import write_json
from edgemb.deploy import DeploySettings, deploy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["x86:v2_1.0", "rpi4:v2_1.0", "cortex-m7:v1_0.25"]


def slim(report: dict, model_arg: str) -> dict:
    """The report without per-run latency samples and the per-layer table (they stay in build/)."""
    artifacts = []
    for a in report["artifacts"]:
        a = dict(a)
        if "latency" in a:
            a["latency"] = {k: v for k, v in a["latency"].items() if k != "samples_ms"}
        artifacts.append(a)
    keep = ("model", "target", "board", "weights", "settings", "data", "device", "recommended", "passed", "stages",
            "seconds", "tools")
    return {"model_arg": model_arg, **{k: report[k] for k in keep}, "artifacts": artifacts}


def main() -> None:
    reports = []
    for item in sys.argv[1:] or DEFAULT:
        target, model = item.split(":")
        print(f"deploying {model} to {target}", flush=True)
        reports.append(slim(deploy(DeploySettings(model, target), ROOT / "build", log=print), model))
    write_json(ROOT / "results" / "deploy.json", {"reports": reports})


if __name__ == "__main__":
    main()
