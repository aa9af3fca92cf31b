"""What every task's parity shares: the SQNR of each raw output, decoded comparison with float, and the one
dict an accuracy budget (edgemb.budget.Budget) judges, in the task's own points.

Kept apart from edgemb/tasks/__init__.py so the task modules can use it without importing one another.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edgemb.metrics import sqnr_db


def output_sqnr(reference: list[np.ndarray], candidate: list[np.ndarray], names: tuple[str, ...]) -> dict[str, float]:
    """SQNR in dB of each raw output of a candidate against the float reference's."""
    return {name: round(sqnr_db(r, c), 3) for name, r, c in zip(names, reference, candidate, strict=True)}


def task_parity(task: Any, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
                truth: Any = None) -> dict[str, Any]:
    """Candidate vs float on the same inputs: task metrics of both (when truth is known), drop in points,
    direct agreement of the decoded results, and the SQNR of every raw output."""
    reference = task.postprocess(float_outputs)
    candidate = task.postprocess(candidate_outputs)
    result: dict[str, Any] = {"task": task.name, "n": len(reference),
                              "sqnr_db": output_sqnr(float_outputs, candidate_outputs, task.output_names),
                              **task.compare(reference, candidate)}
    if truth is not None:
        key = task.metric
        ours, theirs = task.score(reference, truth), task.score(candidate, truth)
        result.update({f"float_{k}": round(v, 4) for k, v in ours.items() if isinstance(v, float)})
        result.update({f"quant_{k}": round(v, 4) for k, v in theirs.items() if isinstance(v, float)})
        result["metric"] = key
        result["drop"] = round(100.0 * (ours[key] - theirs[key]), 3) + 0.0  # no "-0.0"
    return result


def budget_parity(task: Any, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
                  truth: Any = None) -> dict[str, Any]:
    """A decoding task's parity in the form a Budget judges: `drop` in metric points with truth; without it an
    agreement-based figure, 100 x (1 - the metric scored against the float model's own boxes/masks), given as
    `est_drop` with no interval (it bounds what the candidate loses against float, not against the world).

    `sqnr_db` is the worst raw output's (per output in `sqnr_db_outputs`); `agreement` is the task's direct
    agreement with float (`agreement_basis` says which), over all samples (no confidence split).
    """
    result = task_parity(task, float_outputs, candidate_outputs, truth)
    per_output = result.pop("sqnr_db")
    result["sqnr_db"] = min(per_output.values())
    result["sqnr_db_outputs"] = per_output
    result["metric"] = task.metric
    result["agreement"], result["agreement_basis"] = task.agreement(result)
    result["n_confident"], result["agreement_confident"] = 0, None
    if result.get("drop") is None:
        vs_float = result.get(f"{task.metric}_vs_float")
        if vs_float is None:  # nothing to compare (no confident float boxes): undecided, never a pass
            result.update(est_drop=0.0, est_drop_low=0.0, est_drop_high=100.0)
        else:
            figure = round(100.0 * (1.0 - vs_float), 3) + 0.0
            result.update(est_drop=figure, est_drop_low=figure, est_drop_high=figure)
        result["est_basis"] = (f"no labels: 100 x (1 - {task.metric} against the float model's own "
                               f"{task.decoded}), no interval")
    return result


def head(truth: Any, n: int) -> Any:
    """The truth of the first n samples (labels array or a synthetic set's boxes and masks)."""
    if truth is None or len(truth) == n:
        return truth
    return take(truth, np.arange(n))


def take(truth: Any, index: np.ndarray) -> Any:
    """The truth of the samples at `index` (labels array or a synthetic set's boxes and masks)."""
    if truth is None or isinstance(truth, np.ndarray):
        return None if truth is None else truth[index]
    return replace(truth, pixels=truth.pixels[index], boxes=[truth.boxes[i] for i in index],
                   labels=[truth.labels[i] for i in index], masks=truth.masks[index])


def synthdet_truth(data: Any, pp: Any) -> Any:
    """Boxes and masks of an evaluation set read from a synthdet spec (None for any other data)."""
    from edgemb.data.synthetic import KIND, load_spec

    source = getattr(data, "source", "") or ""
    if not source.startswith(f"{KIND}:") or " " in source:  # "(fit)"/"(held out)" parts have no spec
        return None
    truth = load_spec(source, pp)
    return truth if len(truth) == len(data) else None


def run_outputs(runner: Any, batch: np.ndarray, count: int) -> list[np.ndarray]:
    """Every raw output of a runner for a batch: a single-output network through run(), others run_all()."""
    return [runner.run(batch)] if count == 1 else runner.run_all(batch)
