"""`make deploy-table`: run the README's deploys and keep their reports (without raw samples) for the README.

    python scripts/deploy_table.py [TARGET:MODEL[:WEIGHTS] ...]   (default: the deploys the README shows;
                                                                  named deploys replace theirs, keep the rest)
    python scripts/deploy_table.py --report build/T/M/report.json ...   (add deploys already made)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgemb.artifacts import write_json
from edgemb.stages.deploy import DeploySettings, deploy
from edgemb.zoo import parse_model_name
from edgemb.zoo.weights.load import default_weights
from provenance import measured_on

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["rpi4:v2_1.0", "x86:v2_1.0", "x86:v2_1.0:ref", "rpi4:v2_1.0:ref", "cortex-m7:v1_0.25"]


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
    # a report added with --report was made on this host just before; a re-slimmed row keeps its stamp
    return {"model_arg": model_arg, **{k: report[k] for k in keep}, "artifacts": artifacts,
            "measured_on": report.get("measured_on") or measured_on()}


def command_args(report: dict) -> str:
    """`MODEL` or `MODEL WEIGHTS=W`: what `make deploy` needs today to repeat this report's deploy."""
    base = report["model_arg"].split()[0] if "model_arg" in report else report["model"].split("@")[0]
    default, _ = default_weights(parse_model_name(base))
    weights = report["weights"]["spec"]
    return base if weights in (None, default) else f"{base} WEIGHTS={weights}"


def main() -> None:
    reports = []
    args = sys.argv[1:]
    if args[:1] == ["--report"]:  # keep an existing deploy's report.json (e.g. one a test just made)
        reports = [json.loads(Path(path).read_text()) for path in args[1:]]
        reports = [slim(r, command_args(r)) for r in reports]
    else:
        for item in args or DEFAULT:
            target, model, weights = [*item.split(":"), None][:3]
            print(f"deploying {model} to {target} (weights: {weights or 'default'})", flush=True)
            build = ROOT / "build" / (weights or "default")
            report = deploy(DeploySettings(model, target, weights=weights), build, log=print)
            reports.append(slim(report, model + (f" WEIGHTS={weights}" if weights else "")))
    path = ROOT / "results" / "deploy.json"
    # Earlier rows are relabelled with today's command (the default weights changed), then replaced if redone.
    earlier = [{**r, "model_arg": command_args(r)} for r in json.loads(path.read_text())["reports"]] \
        if path.exists() and args else []
    redone = {(r["target"], r["model_arg"]) for r in reports}
    kept = [r for r in earlier if (r["target"], r["model_arg"]) not in redone]
    write_json(path, {"reports": reports + kept})


if __name__ == "__main__":
    main()
