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

A tuned record is not always faster than the default schedule (edgemb/backends/tvm_schedules.py): ReplayTrace draws
random points of MetaSchedule's design space, and MetaScheduleApplyDatabase compiles a task from its best record
whatever the default would have done (V2@224 after 1,280 trials: in the library, 9 of its 25 tuned tasks ran slower than
with their default schedule, up to 2.4x; the stem 302 us against 135). So each tuned task's default schedule goes into
the database as a record of its own, built and measured by the same builder and runner as the candidates
(`default_records`): the database's best record, the one compiled, is then the faster of the two. Such a record is
recognised by its trace (the default rules replayed); it is not a trial and never counts as one.
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
FAILED_SECONDS = 1e10  # MetaSchedule's stub run time (kMaxMeanTime): a record with only that is never applied
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
    seconds: float = 0.0  # the whole run: setup_seconds, then what the budget limits (default_seconds, the search)
    setup_seconds: float = 0.0
    stopped_by: str = STOPPED_BY_TRIALS
    barren_tasks: int = 0  # tasks retired because a batch of theirs came back without a candidate
    best_ms: float | None = None  # best latency summed over the tuned tasks (weighted), measured in this run
    task_records: int = 0  # trials of these tasks in the database after this run
    default_records: int = 0  # default schedules measured by this run (each tuned task's is measured once)
    default_seconds: float = 0.0  # spent measuring them (part of the budget)
    default_ms: float | None = None  # the tuned tasks' default schedules (weighted sum; None: none measured)
    chosen_ms: float | None = None  # the same tasks with the record compile applies: the faster of default and tuned
    tasks_on_default: int = 0  # tasks whose default schedule beats every tuned record: compile keeps it

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


def records_by_task(database: Any, mods: Sequence[Any]) -> list[list[Any]]:
    """Each task module's records in a MetaSchedule database (trials and default schedules)."""
    workloads = [database.commit_workload(mod) if database.has_workload(mod) else None for mod in mods]
    found: list[list[Any]] = [[] for _ in mods]
    if not any(w is not None for w in workloads):
        return found
    for record in database.get_all_tuning_records():
        for i, workload in enumerate(workloads):
            if workload is not None and record.workload.same_as(workload):
                found[i].append(record)
                break
    return found


def task_records(database: Any, mods: Sequence[Any], defaults: Sequence[DefaultSchedule | None] = ()) -> int:
    """Trials (failed ones included) a MetaSchedule database holds for these task modules: the default schedules'
    records (`defaults`) are not trials."""
    texts = {d.text for d in defaults if d is not None}
    return sum(1 for records in records_by_task(database, mods) for r in records if str(r.trace) not in texts)


def mean_seconds(record: Any) -> float:
    """A record's mean run time in seconds (FAILED_SECONDS when it has none)."""
    secs = [float(s) for s in record.run_secs or []]
    return sum(secs) / len(secs) if secs else FAILED_SECONDS


def usable(record: Any) -> bool:
    """A record the database would apply (TuningRecord::IsValid): a trace with instructions and a run time other
    than the failure stub."""
    return len(record.trace.insts) > 0 and any(float(s) != FAILED_SECONDS for s in record.run_secs or [])


@dataclass
class DefaultSchedule:
    """A task's default schedule as a database record would replay it."""

    schedule: Any  # traced tvm.s_tir.Schedule over the task's module
    text: str  # str(trace): how its record is recognised in the database


def default_schedule_of(mod: Any, target: Any, schedule_of: Callable[[Any, Any], Any]) -> DefaultSchedule | None:
    """The task module's default schedule (`schedule_of(func, target)`, edgemb's rules), or None when no rule applies
    (an empty trace is no record the database would apply) or its trace does not replay to the same function: a
    record must compile to exactly what the default schedule pass would have made."""
    import tvm_ffi
    from tvm.s_tir import Schedule

    with target:
        sch = schedule_of(mod["main"], target)
    if sch is None or not sch.trace.insts:
        return None
    replayed = Schedule(mod)
    try:
        sch.trace.apply_to_schedule(replayed, remove_postproc=False)
    except Exception:  # a rule step the trace cannot replay: no record, the tuned ones decide alone
        return None
    if not tvm_ffi.structural_equal(replayed.mod["main"], sch.mod["main"]):
        return None
    return DefaultSchedule(sch, str(sch.trace))


def measure_schedules(schedules: Sequence[Any], target: Any, builder: Any, runner: Any) -> list[list[float]]:
    """Run seconds of each schedule, built and run the way MetaSchedule measures its candidates (the same builder,
    runner and evaluator settings); [FAILED_SECONDS] for one that did not build or run."""
    from tvm.s_tir import meta_schedule as ms

    built = builder.build([ms.builder.BuilderInput(s.mod, target) for s in schedules])
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    device = "cpu" if target.kind.name == "llvm" else target.kind.name  # the runner's device name, not the target's
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, device,
                                                ms.arg_info.ArgInfo.from_entry_func(schedules[i].mod))
                          for i in ok])
    secs: list[list[float]] = [[FAILED_SECONDS] for _ in schedules]
    for i, future in zip(ok, futures, strict=True):
        result = future.result()
        if result.error_msg is None and result.run_secs:
            secs[i] = [float(s) for s in result.run_secs]
        ms.utils.remove_build_dir(built[i].artifact_path)
    return secs


def default_records(database: Any, mods: Sequence[Any], defaults: Sequence[DefaultSchedule | None], target: Any,
                    measure: Callable[[Sequence[Any]], list[list[float]]]) -> int:
    """Measure (`measure`, measure_schedules) and commit the default schedule of every task module whose database
    has no record of it yet; returns how many were measured."""
    from tvm.s_tir import meta_schedule as ms

    todo = [i for i, (d, records) in enumerate(zip(defaults, records_by_task(database, mods), strict=True))
            if d is not None and not any(str(r.trace) == d.text for r in records)]
    if not todo:
        return 0
    for i, secs in zip(todo, measure([defaults[i].schedule for i in todo]), strict=True):
        database.commit_tuning_record(ms.database.TuningRecord(
            defaults[i].schedule.trace, database.commit_workload(mods[i]), secs, target,
            ms.arg_info.ArgInfo.from_entry_func(mods[i])))
    return len(todo)


@dataclass
class Choice:
    """What compile will apply to each task, from the database: the faster of its default and tuned records."""

    default_ms: list[float | None]  # per task; None: no default record
    chosen_ms: list[float | None]  # per task: its best record; None: no valid record
    on_default: list[bool]  # per task: the best record is the default schedule


def weighted_sum(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """The tasks' latencies times their call counts, summed (None when a task has none)."""
    if not values or any(v is None for v in values):
        return None
    return sum(v * w for v, w in zip(values, weights, strict=True))


def choices(database: Any, mods: Sequence[Any], defaults: Sequence[DefaultSchedule | None]) -> Choice:
    """Per task: its default record's latency, its best record's latency (the one MetaScheduleApplyDatabase
    compiles: the lowest mean run time of the usable ones) and whether that is the default schedule."""
    default_ms: list[float | None] = []
    chosen_ms: list[float | None] = []
    on_default: list[bool] = []
    for d, records in zip(defaults, records_by_task(database, mods), strict=True):
        records = [r for r in records if usable(r)]
        own = [r for r in records if d is not None and str(r.trace) == d.text]
        default_ms.append(min(mean_seconds(r) for r in own) * 1e3 if own else None)
        best = min(records, key=mean_seconds, default=None)
        chosen_ms.append(None if best is None else mean_seconds(best) * 1e3)
        on_default.append(best is not None and d is not None and str(best.trace) == d.text)
    return Choice(default_ms, chosen_ms, on_default)
