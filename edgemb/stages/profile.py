"""Stage: run an artifact on a device (this host, the emulated board, SSH or TVM RPC) and time it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import check_output_file, write_json
from edgemb.data import load_data
from edgemb.device.devices import Device, Measurement, combine_rounds, open_device, single_output
from edgemb.errors import EdgembError
from edgemb.stages.export import output_names as model_output_names
from edgemb.zoo.prepared import PreparedModel, prepare_model

PROFILE_SAMPLES = 16
TIMING_ROUNDS = 3  # interleaved timing rounds per artifact on a real device


@dataclass
class DeviceRun:
    """One artifact on one device: every output on every input by the model's output names, the runtime, and
    the combined latency (when timed) or the device's error."""

    name: str
    path: Path
    outputs: dict[str, np.ndarray] | None = None
    runtime: str | None = None
    latency: dict[str, Any] | None = None
    error: str | None = None
    measurements: list[Measurement] = field(default_factory=list)

    def output(self, name: str | None = None) -> np.ndarray:
        """One output by name, or the only one (a classifier's logits); an error for a run that failed."""
        if self.outputs is None:
            raise EdgembError(f"{self.name} has no outputs: {self.error or 'it has not run'}")
        return single_output(self.outputs, name, self.name)


def eta_text(started: float, done: int, total: int) -> str:
    """`, ETA 2.0 min` once one item has finished, from the mean time per item so far."""
    if done == 0:
        return ""
    left = (time.perf_counter() - started) / done * (total - done)
    return f", ETA {left / 60:.1f} min" if left >= 60 else f", ETA {left:.0f} s"


def run_on_device(device: Device, artifacts: dict[str, Path], x: np.ndarray, runs: int, warmup: int, threads: int,
                  log: Callable[[str], None] = print, output_names: Sequence[str] | None = None) -> list[DeviceRun]:
    """Every artifact's outputs on `x` (all of them, by `output_names`: the model's ONNX output names), then
    `runs` timed inferences each (none when `runs` is 0).

    Timed in interleaved rounds (every artifact once per round, rotating order) so a busy spell on a shared
    host slows all candidates alike; the spread of the round medians says which differences are real.
    """
    rounds = 1 if runs == 0 else min(TIMING_ROUNDS, runs)
    per_round = [runs // rounds + (i < runs % rounds) for i in range(rounds)]  # they add up to `runs`
    what = "checking outputs (not timed)" if runs == 0 else "profiling"
    results = [DeviceRun(name, path) for name, path in artifacts.items()]
    started = time.perf_counter()
    if runs == 0 and hasattr(device, "check_outputs"):  # untimed: every artifact in one runner process
        def announce(i: int) -> None:
            log(f"  {what}: {results[i].name} on {device.uri}, {len(x)} samples ({i + 1}/{len(results)}"
                f"{eta_text(started, i, len(results))})")

        answers = device.check_outputs([run.path for run in results], x, threads, output_names, announce)
        for run, answer in zip(results, answers, strict=True):
            if isinstance(answer, EdgembError):
                run.error = str(answer)
            else:
                run.outputs, run.runtime = answer.outputs, answer.result.get("runtime")
                run.measurements.append(answer)
        return results
    for i, run in enumerate(results):
        log(f"  {what}: {run.name} on {device.uri}, {len(x)} samples ({i + 1}/{len(results)}"
            f"{eta_text(started, i, len(results))})")
        try:
            measured = device.measure(run.path, x, per_round[0], warmup, threads, output_names)
        except EdgembError as exc:
            run.error = str(exc)
            continue
        run.outputs, run.runtime = measured.outputs, measured.result.get("runtime")
        run.measurements.append(measured)
    timed = [r for r in results if r.error is None and runs]
    for r in range(1, rounds):
        log(f"  timing round {r + 1}/{rounds}: {len(timed)} artifact(s), {per_round[r]} runs each")
        for run in timed[r % len(timed):] + timed[:r % len(timed)]:
            if run.error is None:
                try:
                    run.measurements.append(device.measure(run.path, x[:1], per_round[r], warmup, threads,
                                                           output_names))
                except EdgembError as exc:
                    run.error = str(exc)
    for run in timed:
        if run.error is None:
            run.latency = combine_rounds(run.measurements)
    return results


def model_of(artifact: Path) -> tuple[str, str | None]:
    """The model and weights an artifact was built from, read from the compile.json or report.json beside it."""
    for name in ("compile.json", "report.json"):
        record = artifact.parent / name
        if record.exists():
            data = json.loads(record.read_text())
            return data["model"], data.get("weights_spec", data.get("weights"))
    raise EdgembError(f"no compile.json or report.json next to {artifact}: pass --model (and --weights)")


def profile_inputs(prepared: PreparedModel, data: str | None) -> np.ndarray:
    """Real preprocessed samples (the weights' own preprocessing; by default their own evaluation data)."""
    if data is None:
        named = prepared.weights.named if prepared.weights is not None else None
        data = (named.evaluation if named else None) or "photos:eval"
        return load_data(data, prepared.preprocessing).x[:PROFILE_SAMPLES]
    return load_data(data, prepared.preprocessing).x


def profile_artifact(artifact: Path, device: str | None, model: str | None = None, weights: str | None = None,
                     data: str | None = None, runs: int = 50, warmup: int = 5, threads: int = 0,
                     out: Path | None = None) -> dict[str, Any]:
    """Latency of one artifact on one device (p50/p90/p99 over `runs`), written to `out` as JSON."""
    if runs < 1 or warmup < 0 or threads < 0:
        raise EdgembError("--runs must be >= 1, --warmup and --threads >= 0")
    if not artifact.exists():
        raise EdgembError(f"artifact not found: {artifact}")
    if out is not None:
        check_output_file(out)
    target_device = open_device(device or "local")  # a bad URI fails before any model is loaded
    if model is None:
        model, weights = model_of(artifact)
    prepared = prepare_model(model, weights)
    inputs = profile_inputs(prepared, data)
    if target_device.emulated:  # an emulator proves numerics, never speed: outputs only
        runs = warmup = 0
    (run,) = run_on_device(target_device, {artifact.name: artifact}, inputs, runs, warmup, threads,
                           output_names=model_output_names(prepared.model))
    if run.error is not None:
        raise EdgembError(run.error)
    report = {"stage": "profile", "artifact": str(artifact), "model": model, "data": data,
              "latency": run.latency, "runtime": run.runtime, "arch": run.measurements[0].result.get("arch"),
              "device": target_device.uri, "samples": len(inputs),
              "outputs": {name: list(value.shape[1:]) for name, value in (run.outputs or {}).items()},
              "note": "emulated: outputs checked, not timed (an emulator says nothing about the board's speed)"
              if target_device.emulated else ""}
    if out is not None:
        write_json(out, report)
    return report
