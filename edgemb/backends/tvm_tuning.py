"""MetaSchedule tuning within a wall-clock budget, with progress lines and a summary for the build report.

TVM 0.27's `ms.tune_tasks` stops only after `max_trials_global` trials. A task scheduler decides, before each
batch of candidates, which task gets it; returning -1 ends the tuning loop, whose epilogue still joins the
batches being measured and commits them to the database (`TaskSchedulerNode::Tune`). `DeadlineScheduler` is
MetaSchedule's gradient-based scheduler (same first round-robin pass and gradient, alpha 0.2, window 3) ported to
a `PyTaskScheduler` that returns -1 once the budget is spent, so a stop by time keeps every record measured.
A measure callback (`PyMeasureCallback`, after the default AddToDatabase/RemoveBuildArtifact/UpdateCostModel)
counts trials and each task's best latency and prints the progress lines: trials done / total, the best
latency summed over the tuned tasks weighted by their call counts (MetaSchedule's "Total latency"), elapsed
time and ETA.
The overshoot past the budget is at most one batch (build plus measurement) per task.
A batch that comes back without a single candidate (ReplayTrace tried each of its slots `REPLAY_FAIL_COUNT` times
and every replay or postprocessor failed) retires its task: such a task never yields one, and MetaSchedule would
otherwise keep drawing empty batches from it until the trials or the budget run out, measuring nothing. Keeping
`REPLAY_FAIL_COUNT` low bounds what one such batch costs (its default, 100, made an empty batch of 16 cost 1,600
replays).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

FAILED_MS = 1e9  # MetaSchedule's latency for a candidate that did not build or run
STOPPED_BY_TRIALS, STOPPED_BY_TIME, ALREADY_TUNED = "trials", "time budget", "database already had the trials"
NO_CANDIDATES = "no task yields candidates"
REPLAY_FAIL_COUNT = 10  # replays per candidate slot before ReplayTrace leaves it empty (TVM's default: 100)
GRADIENT_ALPHA, GRADIENT_WINDOW = 0.2, 3  # ms.task_scheduler.GradientBased's defaults


@dataclass
class TuningSummary:
    """What one tuning run did, for the artifact's build report (compile.json, report.json)."""

    trials_requested: int
    seconds_budget: float | None  # None: no time limit
    tasks: int = 0
    records_reused: int = 0  # trials of these tasks already in the database before this run
    trials: int = 0  # trials measured by this run
    failed_trials: int = 0  # of which did not build or run
    seconds: float = 0.0  # the whole run: setup_seconds, then the search the budget limits
    setup_seconds: float = 0.0
    stopped_by: str = STOPPED_BY_TRIALS
    barren_tasks: int = 0  # tasks retired because a batch of theirs came back without a candidate
    best_ms: float | None = None  # best latency summed over the tuned tasks (weighted), measured in this run
    task_records: int = 0  # trials of these tasks in the database after this run

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def duration(seconds: float) -> str:
    """`42 s` or `3.5 min`: the ETA style of the compile stage's lines."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


@dataclass
class TuningProgress:
    """Trials and best latencies seen by the measure callback, and the throttled progress lines they make."""

    total: int  # trials this run may spend
    weights: Sequence[float]
    started: float
    deadline: float | None = None  # time.monotonic() value; None: no time limit
    budget: float | None = None  # seconds from start() on: it sets `started` and `deadline`
    log: Callable[[str], None] | None = None
    label: str = "tune"
    every: float = 30.0  # seconds between progress lines (the last batch always prints)
    clock: Callable[[], float] = time.monotonic
    trials: int = 0
    failed: int = 0
    best: list[float] = field(default_factory=list)  # per task, FAILED_MS until one candidate ran
    history: list[list[float]] = field(default_factory=list)  # per task: its best after each of its batches
    empty: list[int] = field(default_factory=list)  # per task: batches that came back without a candidate
    last_line: float = -math.inf
    stopped_by_time: bool = False
    nothing_left: bool = False  # the search ended because every task left had been retired without a candidate
    begun: bool = False
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.best = [FAILED_MS] * len(self.weights)
        self.history = [[] for _ in self.weights]
        self.empty = [0] * len(self.weights)

    def start(self) -> None:
        """The search begins (the scheduler's first decision, MetaSchedule's task setup behind it): so does the
        budget."""
        if self.begun:
            return
        self.begun = True
        self.started = self.clock()
        if self.budget:
            self.deadline = self.started + self.budget

    def record(self, task_id: int, latencies_ms: Sequence[float]) -> None:
        """One measured batch of a task (FAILED_MS for a candidate that did not build or run; none at all when no
        candidate survived replay and postprocessing)."""
        if not latencies_ms:
            self.empty[task_id] += 1
        self.trials += len(latencies_ms)
        self.failed += sum(1 for ms in latencies_ms if ms >= FAILED_MS)
        self.best[task_id] = min([self.best[task_id], *latencies_ms])
        self.history[task_id].append(self.best[task_id])
        now = self.clock()
        if now - self.last_line >= self.every or self.trials >= self.total:
            self.last_line = now
            self.say(self.line(now))

    def best_ms(self) -> float | None:
        """Best latency summed over the measured tasks, each weighted by its calls (None before any ran)."""
        measured = [(b, w) for b, w in zip(self.best, self.weights, strict=True) if b < FAILED_MS]
        return sum(b * w for b, w in measured) if measured else None

    def eta(self, now: float) -> tuple[float | None, str]:
        """Seconds left and what ends the run first: the trials at the rate so far, or the time budget."""
        elapsed = now - self.started
        by_trials = (self.total - self.trials) * elapsed / self.trials if self.trials else None
        if self.deadline is not None:
            by_time = max(0.0, self.deadline - now)
            if by_trials is None or by_time < by_trials:
                return by_time, STOPPED_BY_TIME
        return by_trials, STOPPED_BY_TRIALS

    def line(self, now: float) -> str:
        """`tune: 48/2000 trials, best 3.214 ms (5/5 tasks), 1.2 min elapsed, ETA 8.8 min (time budget)`."""
        best = self.best_ms()
        measured = sum(1 for b in self.best if b < FAILED_MS)
        text = f"{self.label}: {self.trials}/{self.total} trials"
        if self.failed:
            text += f" ({self.failed} failed)"
        if any(self.empty):
            text += f" ({sum(1 for e in self.empty if e)} tasks yield no candidate)"
        text += f", best {best:.3f} ms ({measured}/{len(self.best)} tasks)" if best is not None else ", best -"
        text += f", {duration(now - self.started)} elapsed"
        left, bound = self.eta(now)
        text += f", ETA {duration(left)} ({bound})" if left is not None else ", ETA -"
        return text

    def say(self, text: str) -> None:
        """One line to the log; a broken log never stops the tuning."""
        self.lines.append(text)
        if self.log is not None:
            with contextlib.suppress(OSError, ValueError):
                self.log(text)

    def barren(self, task_id: int) -> bool:
        """A batch of this task came back without a candidate: it will not yield one (see the module's doc)."""
        return self.empty[task_id] > 0

    def time_up(self) -> bool:
        """The budget is spent."""
        return self.deadline is not None and self.clock() >= self.deadline

    def gradient(self, task_id: int) -> float:
        """GradientBased's score of a task: how much its weighted latency still drops per batch."""
        history = self.history[task_id]
        if not history or history[-1] >= FAILED_MS:
            return -1e9
        best, n, w = history[-1], len(history), GRADIENT_WINDOW
        backward = (history[n - 1 - w] - best) / w if n >= 1 + w else 0.0
        return (GRADIENT_ALPHA * backward + (1 - GRADIENT_ALPHA) * best / n) * self.weights[task_id]


def run_ms(builder_result: Any, runner_result: Any) -> float:
    """Median measured run time of one candidate in ms, FAILED_MS when it did not build or run."""
    if builder_result.error_msg is not None or runner_result.error_msg is not None:
        return FAILED_MS
    secs = sorted(float(s) for s in runner_result.run_secs or [])
    if not secs:
        return FAILED_MS
    middle = len(secs) // 2
    median = secs[middle] if len(secs) % 2 else (secs[middle - 1] + secs[middle]) / 2
    return median * 1e3


@cache
def _classes() -> tuple[type, type]:
    """(DeadlineScheduler, ProgressCallback): TVM object subclasses, defined once TVM is imported."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class DeadlineScheduler(ms.task_scheduler.PyTaskScheduler):
        """GradientBased's choice of the next task, ending the tuning loop once the time budget is spent."""

        def __init__(self, state: TuningProgress) -> None:
            super().__init__()
            self.state = state
            self.round_robin = 0

        def next_task_id(self) -> int:
            outer = self._outer()
            tasks = outer.tasks_
            self.state.start()
            if self.state.time_up():  # Tune() still joins the running batches and records them
                self.state.stopped_by_time = True
                return -1
            n = len(tasks)
            while self.round_robin < n:  # every task gets one batch first
                self.round_robin += 1
                if not tasks[self.round_robin - 1].is_terminated:
                    return self.round_robin - 1
            if self.round_robin == n:  # then the first round's results decide
                self.round_robin += 1
                for i in range(n):
                    if tasks[i].runner_futures is not None:
                        outer.join_running_task(i)
            for i in range(n):
                outer.touch_task(i)  # joins a task whose batch has finished
                if self.state.barren(i) and not tasks[i].is_terminated and tasks[i].runner_futures is None:
                    outer.terminate_task(i)  # it would only draw empty batches until the budget is spent
            alive = [i for i in range(n) if not tasks[i].is_terminated]
            if not alive:
                self.state.nothing_left = any(self.state.empty)
                return -1
            scores = [self.state.gradient(i) for i in alive]
            if max(scores) == min(scores):  # no information: the task with the fewest batches
                choice = min(alive, key=lambda i: (len(self.state.history[i]), i))
            else:
                choice = alive[scores.index(max(scores))]
            if tasks[choice].runner_futures is not None:
                outer.join_running_task(choice)
            return choice

    @derived_object
    class ProgressCallback(ms.measure_callback.PyMeasureCallback):
        """Feeds each measured batch to the progress state (after the database has it)."""

        def __init__(self, state: TuningProgress) -> None:
            self.state = state

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            self.state.record(int(task_id), [run_ms(b, r) for b, r in zip(builder_results, runner_results,
                                                                           strict=True)])

    return DeadlineScheduler, ProgressCallback


def deadline_scheduler(state: TuningProgress) -> Any:
    """The task scheduler for ms.tune_tasks(task_scheduler=...)."""
    return _classes()[0](state)


def progress_callbacks(state: TuningProgress) -> list[Any]:
    """MetaSchedule's default measure callbacks followed by the progress one."""
    from tvm.s_tir import meta_schedule as ms

    return [*ms.measure_callback.MeasureCallback.create("default"), _classes()[1](state)]


def task_records(database: Any, mods: Sequence[Any]) -> int:
    """Trials (failed ones included) a MetaSchedule database holds for these task modules."""
    workloads = [database.commit_workload(mod) for mod in mods if database.has_workload(mod)]
    if not workloads:
        return 0
    return sum(1 for record in database.get_all_tuning_records()
               if any(record.workload.same_as(w) for w in workloads))
