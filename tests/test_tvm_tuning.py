"""TVM tuning that pays (#19, deliverable 3): a wall-clock budget, progress lines, records reused across builds.

The fast tests drive the progress/scheduling state with a fake clock and the budget defaults (the database key:
tests/test_tvm_database_key.py);
two run TVM on a tiny model: compiling its untuned library leaves the module tunable, and MetaSchedule's loop
ends once no task yields a candidate (V2@224's 10-minute tuning measured 0 trials: its module had been scheduled
in place, and the loop drew empty batches until the budget ran out).
Tuned V2@224 (1,280 trials, 7.45 ms against 3.52 ms summed over its tasks' best trials) lost its gains in the
library: the classifier's matrix product (1.4 ms, 0.4% of the MACs: never a tuning task) had no default schedule,
and 4 of the 25 tuned tasks compiled from a tuned record slower than their default schedule. Tests: the matrix
product's default schedule, each tuned task's default schedule recorded beside its trials (measured once, not a
trial, within the budget) and the faster of the two compiled.
The slow ones tune a three-convolution model at 32x32 through the TVM backend with a budget of a few seconds and
a trial count it could never reach: tuning stops by time, keeps what it measured, the library built with those
records matches onnxruntime, and a second build reuses the records instead of tuning again.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from edgemb.backends.tvm_tuning import (
    ALREADY_TUNED,
    FAILED_MS,
    FAILED_SECONDS,
    REPLAY_FAIL_COUNT,
    STOPPED_BY_TIME,
    STOPPED_BY_TRIALS,
    TuningProgress,
    duration,
)

PROGRESS = re.compile(r"(\d+)/(\d+) trials.*, best ([\d.]+) ms \((\d+)/(\d+) tasks\), .* elapsed, "
                      r"ETA ([\d.]+ (?:s|min))")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_say_trials_weighted_best_and_eta_with_what_bounds_it():
    clock, lines = Clock(), []
    state = TuningProgress(total=100, weights=[2.0, 1.0], started=clock.now, deadline=clock.now + 600,
                           log=lines.append, label="tune", every=0.0, clock=clock)
    clock.now += 10
    state.record(0, [3.0, 1.5, FAILED_MS])  # a failed candidate counts as a trial, never as the best
    assert (state.trials, state.failed, state.best_ms()) == (3, 1, 3.0)  # 2 x 1.5 ms; task 1 not measured yet
    match = PROGRESS.search(lines[-1])
    assert match, lines[-1]
    assert match.groups()[:5] == ("3", "100", "3.000", "1", "2")
    assert "(1 failed)" in lines[-1] and "10 s elapsed" in lines[-1]
    # 97 trials left at 3 per 10 s: 323 s, before the budget's 590 s
    assert lines[-1].endswith(f"ETA {duration(97 * 10 / 3)} ({STOPPED_BY_TRIALS})")
    clock.now += 20
    state.record(1, [0.5, 0.25])
    assert state.best_ms() == pytest.approx(2 * 1.5 + 0.25)
    assert "best 3.250 ms (2/2 tasks)" in lines[-1]
    state.total = 10_000  # now the time budget ends the run first: 600 - 30 s
    assert state.line(clock.now).endswith(f"ETA 9.5 min ({STOPPED_BY_TIME})")
    assert not state.time_up()
    clock.now += 571
    assert state.time_up()


def test_the_budget_starts_with_the_search_not_with_the_setup():
    """MetaSchedule's setup (TVM's imports, design spaces) can take a minute on a loaded host: not the budget's."""
    clock = Clock()
    state = TuningProgress(total=10, weights=[1.0], started=clock.now, budget=5.0, clock=clock)
    clock.now += 60
    assert not state.time_up()
    state.start()  # the scheduler's first decision
    assert state.started == 160.0
    clock.now += 4.9
    state.start()  # later decisions do not move it
    assert not state.time_up()
    clock.now += 0.2
    assert state.time_up()


def test_progress_lines_are_throttled_in_a_log_and_the_last_batch_always_prints():
    clock, lines = Clock(), []
    state = TuningProgress(total=64, weights=[1.0], started=clock.now, log=lines.append, every=30.0, clock=clock)
    for _ in range(3):
        clock.now += 5
        state.record(0, [1.0] * 16)
    assert len(lines) == 1  # the first batch, then nothing for 30 s
    clock.now += 5
    state.record(0, [1.0] * 16)  # the last of the 64 trials
    assert len(lines) == 2 and lines[-1].startswith("tune: 64/64 trials")
    assert ", ETA 0 s" in lines[-1]
    broken = TuningProgress(total=1, weights=[1.0], started=0.0, log=_closed_stream_write, every=0.0)
    broken.record(0, [1.0])  # a closed log never stops the tuning
    assert broken.lines


def _closed_stream_write(line: str) -> None:
    raise ValueError("I/O operation on closed file")


def test_without_a_time_budget_the_eta_comes_from_the_trials():
    clock = Clock()
    state = TuningProgress(total=20, weights=[1.0], started=clock.now, clock=clock)
    assert state.line(clock.now).endswith("best -, 0 s elapsed, ETA -")
    clock.now += 4
    state.record(0, [2.0] * 4)
    assert state.eta(clock.now) == (pytest.approx(16.0), STOPPED_BY_TRIALS)
    assert not state.time_up()


def test_the_scheduler_gradient_prefers_the_task_that_costs_most_and_skips_broken_ones():
    state = TuningProgress(total=100, weights=[1.0, 10.0, 5.0], started=0.0)
    for task, latency in ((0, 2.0), (1, 1.0), (2, FAILED_MS)):
        state.record(task, [latency])
    scores = [state.gradient(i) for i in range(3)]
    assert scores[1] > scores[0] and scores[2] == -1e9  # 10 x 1 ms beats 1 x 2 ms; no valid run: last
    for _ in range(4):
        state.record(1, [1.0])  # task 1 stops improving: its score falls with the batches spent on it
    assert state.gradient(1) < scores[1]


def test_a_task_whose_batch_comes_back_empty_is_retired_and_the_progress_line_says_so():
    """A batch without a candidate (every replay of every slot failed) means the task yields none: V2@224 drew 479
    such batches in 10 minutes, measured nothing, and its lines said only `0/4000 trials`."""
    clock, lines = Clock(), []
    state = TuningProgress(total=4000, weights=[1.0, 2.0], started=clock.now, log=lines.append, every=0.0,
                           clock=clock)
    clock.now += 2
    state.record(0, [])
    state.record(1, [1.0] * 16)
    assert state.barren(0) and not state.barren(1)
    assert (state.trials, state.failed, state.best_ms()) == (16, 0, 2.0)
    assert lines[-1].startswith("tune: 16/4000 trials (1 tasks yield no candidate), best 2.000 ms (1/2 tasks)")
    assert state.gradient(0) == -1e9
    assert 1 <= REPLAY_FAIL_COUNT <= 20  # an empty batch of 16 costs 16 x REPLAY_FAIL_COUNT replays, not 1,600


def test_compiling_the_untuned_library_leaves_the_module_tunable(tmp_path):
    """scripts/tvm_tuning_bench.py compiled the untuned library, then tuned the same module: dlight's default schedules
    had replaced its functions in place (`tirx.is_scheduled`), MetaSchedule's only design space for them was the
    root annotations, every replay failed in postprocessing and V2@224 measured 0 trials in 10 minutes.
    compile_library leaves its module as it was; a module scheduled anyway has no task to tune and says so."""
    pytest.importorskip("tvm")
    import tvm

    from edgemb.backends.tvm_backend import compile_library, dominant_tasks, import_onnx, tune
    from edgemb.backends.tvm_schedules import default_schedule_pass
    from edgemb.stages.export import export_simplified

    def scheduled(mod) -> list[str]:
        return [gv.name_hint for gv, f in mod.functions_items()
                if f.attrs is not None and "tirx.is_scheduled" in f.attrs]

    host = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}
    torch.manual_seed(0)
    export_simplified(ThreeConvs().eval(), RESOLUTION, tmp_path / "model.onnx")
    mod, _ = import_onnx(tmp_path / "model.onnx", host)
    tasks = [task.task_name for task, _ in dominant_tasks(mod, host, share=1.0)]
    assert len(tasks) >= 3 and not scheduled(mod)
    compile_library(mod, host, None, tmp_path / "untuned.so")
    assert not scheduled(mod)  # before the fix: every convolution, scheduled in place
    assert [task.task_name for task, _ in dominant_tasks(mod, host, share=1.0)] == tasks
    with tvm.target.Target(host) as target:
        compiled = default_schedule_pass(target)(mod.clone())
    assert scheduled(compiled) and not dominant_tasks(compiled, host, share=1.0)
    lines = []
    summary = tune(compiled, host, tmp_path / "database", 64, seconds=5.0, log=lines.append)
    assert (summary.trials, summary.tasks, summary.stopped_by) == (0, 0, "no task to tune")
    assert "already have a schedule" in lines[0] and "no tuning" in lines[-1]


def test_the_search_ends_when_no_task_yields_a_candidate(tmp_path, monkeypatch):
    """MetaSchedule's own loop with the deadline scheduler, on tasks every replay of which fails in postprocessing
    (V2@224's scheduled functions, RewriteParallelVectorizeUnroll): one empty batch per task, then the search ends,
    instead of drawing empty batches until the budget is spent."""
    pytest.importorskip("tvm")
    import time

    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    from edgemb.backends.tvm_backend import import_onnx
    from edgemb.backends.tvm_schedules import default_schedule_pass
    from edgemb.backends.tvm_tuning import deadline_scheduler, progress_callbacks
    from edgemb.stages.export import export_simplified

    @derived_object
    class NoBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            assert not build_inputs, "a candidate came out of a task that cannot yield one"
            return []

    @derived_object
    class NoRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            return []

    host = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}
    torch.manual_seed(0)
    export_simplified(ThreeConvs().eval(), RESOLUTION, tmp_path / "model.onnx")
    mod, _ = import_onnx(tmp_path / "model.onnx", host)
    with tvm.target.Target(host) as target:
        mod = default_schedule_pass(target)(mod)
    tasks = [t for t in ms.relax_integration.extract_tasks(mod, tvm.target.Target(host)) if "conv2d" in t.task_name]
    # the rule and postprocessor of the target's defaults that make (and then reject) their only design space
    space = ms.space_generator.PostOrderApply(
        sch_rules=[ms.schedule_rule.ParallelizeVectorizeUnroll(
            max_jobs_per_core=16, max_vectorize_extent=64, unroll_max_steps=[0, 16, 64, 512], unroll_explicit=True)],
        postprocs=[ms.postproc.RewriteParallelVectorizeUnroll()], mutator_probs={})
    # TuneContext imports TVM's tensor intrinsics (20-40 s of TVMScript parsing on 2 cores), which these rules do
    # not use
    monkeypatch.setitem(sys.modules, "tvm.s_tir.tensor_intrin", types.ModuleType("tvm.s_tir.tensor_intrin"))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, str(tmp_path / "work"), space=space, strategy=ms.search_strategy.ReplayTrace(REPLAY_FAIL_COUNT),
        num_threads=1)
    state = TuningProgress(total=4000, weights=[float(w) for w in weights], started=time.monotonic(), budget=60.0)
    started = time.monotonic()
    ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(tmp_path / "work"), max_trials_global=4000,
                  num_trials_per_iter=16, cost_model="random", builder=NoBuilder(), runner=NoRunner(),
                  database=ms.database.MemoryDatabase(), measure_callbacks=progress_callbacks(state),
                  task_scheduler=deadline_scheduler(state))
    assert len(tasks) >= 3 and state.empty == [1] * len(tasks) and state.trials == 0
    assert state.nothing_left and not state.stopped_by_time
    assert time.monotonic() - started < 30


def test_budget_defaults_to_ten_minutes_when_tuning_and_zero_means_none():
    from edgemb import cli
    from edgemb.backends.tvm_backend import DEFAULT_TUNE_SECONDS, tune_budget

    assert DEFAULT_TUNE_SECONDS == 600
    assert tune_budget(100, None) == DEFAULT_TUNE_SECONDS
    assert tune_budget(100, 30) == 30.0
    assert tune_budget(100, 0) is None
    assert tune_budget(0, 30) is None
    assert f"default {DEFAULT_TUNE_SECONDS:g} with --tune-trials" in cli.TUNE_SECONDS_HELP


@pytest.mark.parametrize("value", ["-1", "nan", "1e9"])
def test_tune_seconds_out_of_range_is_a_usage_error(capsys, value):
    from edgemb import cli

    assert cli.main(["deploy", "v1_0.25", "--target", "x86", "--tune-trials", "10", "--tune-seconds", value]) == 2
    assert "--tune-seconds must be between 0" in capsys.readouterr().err


def test_compile_and_deploy_pass_the_budget_to_the_backend(monkeypatch, tmp_path):
    """The flag reaches BuildInputs.options for `compile`, and DeploySettings (part of the stage key) for deploy."""
    from edgemb import cli
    from edgemb.errors import EdgembError
    from edgemb.stages import compile as compile_stage
    from edgemb.stages import deploy as deploy_stage

    seen = {}
    monkeypatch.setattr(compile_stage, "_build_all", lambda pairs, inputs, *args, **kwargs:
                        seen.update(inputs.options) or [])
    compile_stage.compile_model("v1_0.25", "x86", tmp_path / "c", backend="tvm", calib="fashion-mnist:train:8",
                                eval_spec="fashion-mnist:test:8", tune_trials=8, tune_seconds=42.0)
    assert (seen["tune_trials"], seen["tune_seconds"]) == (8, 42.0)

    def deploy(settings, out, log):
        seen["settings"] = settings
        raise EdgembError("stop here: only the settings matter")

    monkeypatch.setattr(deploy_stage, "deploy", deploy)
    assert cli.main(["deploy", "v1_0.25", "--target", "x86", "--tune-trials", "8", "--tune-seconds", "42"]) == 2
    assert (seen["settings"].tune_trials, seen["settings"].tune_seconds) == (8, 42.0)
    assert cli.main(["deploy", "v1_0.25", "--target", "x86", "--tune-trials", "8"]) == 2
    assert seen["settings"].tune_seconds is None  # the backend's default budget applies


def host_spec() -> dict:
    """This host's TVM target, one core."""
    import tvm

    return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}


class Classifier(nn.Module):
    """A convolution, global pooling and a linear layer: ONNX Gemm, whose weight TVM stores as [K, N]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, 2, 1)
        self.fc = nn.Linear(64, 100)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))


def test_the_classifier_matmul_has_a_default_schedule_and_stays_exact(tmp_path):
    """V2@224's classifier (1280 x 1000, weight [K, N]) ran as scalar loops, in the untuned library and the tuned one
    (dlight's CPU GEMV schedules only the [N, K] form; its reduction rule makes scalar loops, one output each, that
    read the weight a column at a time; too few FLOPs to be a tuning task): 1.4 ms of the tuned 7.5 ms."""
    pytest.importorskip("tvm")
    import tvm
    from tvm import relax

    from edgemb.backends.tvm_backend import compile_library, import_onnx
    from edgemb.backends.tvm_schedules import _column_tile, default_schedule_pass
    from edgemb.onnx_graph import session
    from edgemb.stages.export import export_simplified

    assert _column_tile(1000, 16) == 200 and _column_tile(64, 16) == 64 and _column_tile(7, 16) == 7
    host = host_spec()
    torch.manual_seed(0)
    export_simplified(Classifier().eval(), RESOLUTION, tmp_path / "model.onnx")
    mod, _ = import_onnx(tmp_path / "model.onnx", host)
    with tvm.target.Target(host) as target:
        scheduled = default_schedule_pass(target)(mod.clone())
    matmuls = [gv for gv in scheduled.get_global_vars() if "matmul" in gv.name_hint]
    assert matmuls
    for gv in matmuls:
        assert scheduled[gv].attrs.get("tirx.is_scheduled"), gv.name_hint
        script = scheduled[gv].script()
        assert "T.parallel" in script and "T.vectorized" in script  # before: dlight's scalar reduction loops
    compile_library(mod, host, None, tmp_path / "model.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "model.so")), tvm.cpu())
    x = np.random.default_rng(1).standard_normal((1, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    want = session(tmp_path / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-4)


def three_conv_tasks(folder: Path):
    """(ThreeConvs' Relax module, its tuning tasks, their modules, their default schedules) for this host."""
    import tvm

    from edgemb.backends.tvm_backend import dominant_tasks, import_onnx
    from edgemb.backends.tvm_schedules import default_schedule
    from edgemb.backends.tvm_tuning import default_schedule_of
    from edgemb.stages.export import export_simplified

    torch.manual_seed(0)
    export_simplified(ThreeConvs().eval(), RESOLUTION, folder / "model.onnx")
    mod, _ = import_onnx(folder / "model.onnx", host_spec())
    tasks = [task for task, _ in dominant_tasks(mod, host_spec(), share=1.0)]
    mods = [task.dispatched[0] for task in tasks]
    target = tvm.target.Target(host_spec())
    return mod, tasks, mods, [default_schedule_of(m, target, default_schedule) for m in mods]


def test_compile_applies_the_faster_of_each_tasks_default_schedule_and_tuned_record(tmp_path):
    """MetaScheduleApplyDatabase compiles a task from its best record: in V2@224's tuned library 9 of 25 tasks ran
    slower than with their default schedule (the stem 302 us against 135). Each task's default schedule is a record
    beside the trials, measured once and not counted as a trial, so the best record is the faster of the two; a
    default that failed never wins."""
    pytest.importorskip("tvm")
    import tvm
    from tvm import relax
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    from edgemb.backends.tvm_backend import compile_library, scheduled_module
    from edgemb.backends.tvm_tuning import choices, default_records, task_records
    from edgemb.onnx_graph import session

    mod, tasks, mods, defaults = three_conv_tasks(tmp_path)
    assert len(tasks) == 3 and all(defaults)
    target = tvm.target.Target(host_spec())
    (tmp_path / "db").mkdir()
    db = ms.database.JSONDatabase(work_dir=str(tmp_path / "db"))
    # each task's "tuned" record: a trace that leaves its loops naive (no parallel loop), at made-up speeds
    tuned_seconds, default_seconds = [1e-6, 1.0, 1.0], [[1e-4], [1e-4], [FAILED_SECONDS]]
    for m, secs in zip(mods, tuned_seconds, strict=True):
        sch = Schedule(m)
        sch.get_child_blocks(sch.get_sblock("root"))  # an empty trace is no record the database applies
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, db.commit_workload(m), [secs], target,
                                                         ms.arg_info.ArgInfo.from_entry_func(m)))
    measured = []

    def measure(schedules):
        measured.append(len(schedules))
        return default_seconds[:len(schedules)]

    assert default_records(db, mods, defaults, target, measure) == 3
    assert default_records(db, mods, defaults, target, measure) == 0 and measured == [3]  # once per database
    assert task_records(db, mods, defaults) == 3  # the default schedules are no trials
    chosen = choices(db, mods, defaults)
    assert chosen.on_default == [False, True, False]
    assert chosen.default_ms[:2] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert chosen.chosen_ms == [pytest.approx(1e-3), pytest.approx(0.1), pytest.approx(1e3)]
    scheduled, from_database = scheduled_module(mod, host_spec(), tmp_path / "db")
    assert sorted(from_database) == sorted(task.task_name for task in tasks)  # every task found in the database
    for task, on_default in zip(tasks, chosen.on_default, strict=True):
        script = scheduled[task.task_name].script()
        assert ("T.parallel" in script) == on_default, task.task_name  # before: every task from its naive record
    compile_library(mod, host_spec(), tmp_path / "db", tmp_path / "model.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "model.so")), tvm.cpu())
    x = np.random.default_rng(2).standard_normal((1, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    want = session(tmp_path / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-4)


def test_default_schedules_are_measured_by_the_tuning_builder_and_runner(tmp_path):
    """The default schedules' run times come from MetaSchedule's own LocalBuilder and LocalRunner (the ones the
    candidates are measured with), so the two are compared like for like."""
    pytest.importorskip("tvm")
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from edgemb.backends.tvm_backend import _build_without_tensor_intrinsics
    from edgemb.backends.tvm_tuning import measure_schedules

    _, _, _, defaults = three_conv_tasks(tmp_path)
    builder = ms.builder.LocalBuilder(f_build=_build_without_tensor_intrinsics, timeout_sec=120)
    runner = ms.runner.LocalRunner(timeout_sec=60)
    seconds = measure_schedules([d.schedule for d in defaults], tvm.target.Target(host_spec()), builder, runner)
    assert len(seconds) == 3
    assert all(0 < s < 0.1 for run in seconds for s in run), seconds  # every one built and ran


def test_the_default_schedules_are_measured_within_the_budget(tmp_path, monkeypatch):
    """Measuring the default schedules is search work: a budget they use up leaves no time for trials, the run says
    so, and the database holds the default schedules, which the library then applies."""
    pytest.importorskip("tvm")
    import time

    from tvm.s_tir import meta_schedule as ms

    from edgemb.backends import tvm_backend

    def measure(schedules, *_args):
        time.sleep(0.5)
        return [[1e-4] for _ in schedules]

    def no_search(**_kwargs):
        raise AssertionError("the budget was spent on the default schedules: no search")

    monkeypatch.setattr(tvm_backend, "measure_schedules", measure)
    monkeypatch.setattr(ms, "tune_tasks", no_search)
    mod, tasks, _, _ = three_conv_tasks(tmp_path)
    lines = []
    summary = tvm_backend.tune(mod, host_spec(), tmp_path / "db", 64, seconds=0.3, log=lines.append, share=1.0)
    assert (summary.trials, summary.stopped_by, summary.default_records) == (0, STOPPED_BY_TIME, 3)
    assert summary.default_seconds >= 0.5 and summary.records_reused == summary.task_records == 0
    assert summary.tasks_on_default == 3 and summary.chosen_ms == summary.default_ms == pytest.approx(0.3)
    assert any("measured the default schedules of 3 tasks" in line for line in lines), lines
    assert "compiled: 0.300 ms (default schedules 0.300 ms, kept for 3 of 3 tasks)" in lines[-1]
    _, from_database = tvm_backend.scheduled_module(mod, host_spec(), tmp_path / "db")
    assert sorted(from_database) == sorted(task.task_name for task in tasks)


# --- real tuning, a tiny model -------------------------------------------------------------------------------

RESOLUTION = 32
BUDGET_SECONDS = 20.0  # the three default schedules (a few seconds on a loaded 2-core host), then the search
TRIALS = 1000  # far more than 20 s of search can measure: the budget must end it


class ThreeConvs(nn.Module):
    """Stem, depthwise and pointwise convolutions: three MetaSchedule tasks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), nn.Conv2d(16, 16, 3, 1, 1, groups=16),
                                      nn.ReLU6(), nn.Conv2d(16, 32, 1))

    def forward(self, x):
        return self.features(x)


@contextlib.contextmanager
def stderr_to(path: Path):
    """File descriptor 2 into a file (the tuner writes its progress to the process's stderr)."""
    saved = os.dup(2)
    with open(path, "w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def tvm_build(folder: Path, onnx_path: Path, trials: int, seconds: float | None, log: Path):
    """The TVM backend's fp32 build of the tiny model for this host, its progress lines in `log`."""
    from edgemb.backends.base import BuildInputs
    from edgemb.backends.tvm_backend import TvmBackend
    from edgemb.targets import get_target

    folder.mkdir(parents=True, exist_ok=True)
    prepared = SimpleNamespace(spec=SimpleNamespace(name=f"three_convs@{RESOLUTION}"))
    inputs = BuildInputs(prepared, onnx_path, np.zeros((1, 3, RESOLUTION, RESOLUTION), np.float32), folder,
                         folder, {"tune_trials": trials, "tune_seconds": seconds})
    with stderr_to(log):
        return TvmBackend().build(inputs, get_target("x86"), "fp32", folder)


@pytest.fixture(scope="module")
def tuned():
    """A first build with a 20 s budget and 1000 trials, then a second build asking for what the first measured."""
    pytest.importorskip("tvm")
    from edgemb.stages.export import export_simplified

    with tempfile.TemporaryDirectory(prefix="edgemb-tuning-") as tmp, pytest.MonkeyPatch.context() as patch:
        root = Path(tmp)
        patch.setenv("EDGEMB_CACHE", str(root / "cache"))  # a database of its own
        patch.setenv("EDGEMB_PROGRESS", "0")  # as in a CI log
        torch.manual_seed(0)
        export_simplified(ThreeConvs().eval(), RESOLUTION, root / "model.onnx")
        first = tvm_build(root / "first", root / "model.onnx", TRIALS, BUDGET_SECONDS, root / "first.log")
        database = Path(first.extra["tuning"]["database"])
        records_after_first = len((database / "database_tuning_record.json").read_text().splitlines())
        trials = first.extra["tuning"]["trials"]
        second = tvm_build(root / "second", root / "model.onnx", trials, BUDGET_SECONDS, root / "second.log")
        yield SimpleNamespace(root=root, first=first, second=second, database=database,
                              records_after_first=records_after_first,
                              first_log=(root / "first.log").read_text(), second_log=(root / "second.log").read_text(),
                              records_after_second=len((database / "database_tuning_record.json").read_text()
                                                       .splitlines()))


@pytest.mark.slow
def test_a_time_budget_stops_tuning_and_the_library_keeps_its_records_and_matches_onnxruntime(tuned):
    from edgemb.backends.tvm_backend import TvmRunner
    from edgemb.onnx_graph import session

    tuning = tuned.first.extra["tuning"]
    assert tuning["stopped_by"] == STOPPED_BY_TIME, tuning
    assert (tuning["trials_requested"], tuning["seconds_budget"]) == (TRIALS, BUDGET_SECONDS)
    assert 0 < tuning["trials"] < TRIALS
    assert tuning["records_reused"] == 0
    # a clean stop: every measured trial is in the database beside each task's default schedule, and the search ran
    # over its budget by no more than the batches already under way (one per task)
    assert tuning["default_records"] == tuning["tasks"] == 3
    assert tuning["task_records"] == tuning["trials"] == tuned.records_after_first - 3
    assert tuning["records"] == tuned.records_after_first
    assert tuning["seconds"] - tuning["setup_seconds"] < BUDGET_SECONDS + 120
    assert tuning["best_ms"] > 0
    # the library: every task from the database, each the faster of its default schedule and best trial
    assert tuning["functions_from_database"] == 3
    assert 0 < tuning["chosen_ms"] <= tuning["default_ms"] and 0 <= tuning["tasks_on_default"] <= 3
    x = np.random.default_rng(0).standard_normal((2, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    ort = session(tuned.root / "model.onnx")
    want = np.concatenate([ort.run(None, {"input": sample[None]})[0] for sample in x])  # exported for batch 1
    got = TvmRunner(tuned.first.path).run(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_second_build_reuses_the_records_and_does_not_tune(tuned):
    first, second = tuned.first.extra["tuning"], tuned.second.extra["tuning"]
    assert second["stopped_by"] == ALREADY_TUNED, second
    assert second["trials"] == 0
    assert second["records_reused"] == second["task_records"] == first["trials"]
    assert second["database"] == first["database"]
    assert tuned.records_after_second == tuned.records_after_first  # nothing measured again
    assert second["default_records"] == 0 and second["chosen_ms"] == first["chosen_ms"]
    assert "measured the default schedules of 3 tasks" in tuned.first_log
    assert "measured the default schedules" not in tuned.second_log
    assert f"reused {first['trials']} records" in tuned.second_log
    assert "trials," not in tuned.second_log  # no progress line: no tuning
    assert second["records"] == tuned.records_after_first  # and the library applies them


@pytest.mark.slow
def test_progress_lines_show_trials_best_and_eta_in_a_log(tuned):
    lines = [line for line in tuned.first_log.splitlines() if "tune: tvm fp32" in line]
    progress = [PROGRESS.search(line) for line in lines]
    assert any(progress), tuned.first_log
    for match in filter(None, progress):
        done, total = int(match.group(1)), int(match.group(2))
        assert 0 < done <= total == TRIALS
        assert float(match.group(3)) > 0
    assert "(stopped by time budget;" in lines[-1], lines
    assert f"{tuned.first.extra['tuning']['trials']} trials in" in lines[-1]
