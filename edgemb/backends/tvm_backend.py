"""Apache TVM (0.27, Relax): ONNX import, MetaSchedule tuning with a cached database, cross-compiled library.

fp32 builds the float graph. int8 takes the quantize stage's QDQ model (options["qdq_model"], the model
onnxruntime int8 runs; without it the build is an EdgembError, never a fallback) and lowers it to integer kernels
(edgemb/backends/tvm_lowering.py): TVM 0.27 alone would import it as fake-quant. Tuning spends its trials on the
tasks that dominate (FLOPs x calls), within a wall-clock budget (edgemb/backends/tvm_tuning.py), and keeps them in a
database per model, precision, target (thread count included) and ISA (`database_dir`) that later builds, and
scripts/tvm_tuning_bench.py, reuse instead of tuning again. Each tuned task's default schedule
is measured into the same database, so the library compiles whichever of the two ran faster.
ARM libraries are cross-compiled with Debian's aarch64 g++ and run only on the board (real or emulated).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.backends.base import NEEDS_DEVICE, Artifact, BuildInputs, importable, quantize_stage_model
from edgemb.backends.tvm_dot import ATTR_DEPTHWISE, ATTR_INTRIN, DotKernel, choose_kernel, spec_kernel
from edgemb.backends.tvm_lowering import float_nhwc, lower_qdq
from edgemb.backends.tvm_schedules import default_schedule, default_schedule_pass
from edgemb.backends.tvm_tuning import (
    ALREADY_TUNED,
    NO_CANDIDATES,
    REPLAY_FAIL_COUNT,
    STOPPED_BY_TIME,
    TuningProgress,
    TuningSummary,
    choices,
    deadline_scheduler,
    default_records,
    default_schedule_of,
    duration,
    measure_schedules,
    progress_callbacks,
    task_records,
    weighted_sum,
)
from edgemb.cache import cache_dir
from edgemb.device.runner import board_arch
from edgemb.errors import EdgembError
from edgemb.locking import file_lock
from edgemb.progress import show_progress
from edgemb.quiet import native_output_captured
from edgemb.targets import Target
from edgemb.zoo.registry import ModelSpec

CROSS_COMPILERS = {"aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")}
PRECISIONS = ("fp32", "int8")
TUNE_RPC_ENV = "EDGEMB_TVM_TUNE_RPC"
DEFAULT_TUNE_TRIALS = 0  # deploys stay fast; `--tune-trials N` (or a cached database) makes TVM competitive
DEFAULT_TUNE_SECONDS = 600.0  # wall-clock budget of `--tune-trials N` unless `--tune-seconds S` (0: no limit)
PROGRESS_SECONDS = 30.0  # one tuning progress line this often in a log (every batch on a terminal)
BUILD_TIMEOUT_SECONDS = 120
DOMINANT_SHARE = 0.97  # tune the fewest tasks covering this share of FLOPs x calls (the rest: a few percent)


def host_arch() -> str:
    """This machine's architecture in the targets' terms (the device runner's own check, so both agree)."""
    return board_arch()


def tvm_target_dict(target: Target) -> dict[str, Any]:
    """The target's JSON-dict TVM target; `mcpu = "host"` becomes the detected CPU (TVM's "native" is generic)."""
    if target.tvm_target is None:
        raise EdgembError(f"target {target.name} has no runtime.tvm_target in its TOML")
    spec = dict(target.tvm_target)
    if spec.get("mcpu") == "host":
        import tvm

        spec["mcpu"] = tvm.target.codegen.llvm_get_system_cpu()
    spec.setdefault("num-cores", target.threads)
    return spec


def database_dir(model: ModelSpec, precision: str, spec: dict[str, Any], isa: Sequence[str]) -> Path:
    """The MetaSchedule database of one model at one precision for one TVM target and ISA, in the user cache.

    The one key of every tuning database: the TVM backend's build (a deploy's compile stage), the deploy's check of
    what its compile would apply, and scripts/tvm_tuning_bench.py (`make tvm-bench`, `make tvm-tune-bench`) all
    call it, so records tuned by any of them are applied by the others: fp32 records, whose kernels take the
    weights as arguments. int8 kernels have the model's activation scales, zero points and clamps built in
    as constants, so an int8 record matches only a QDQ model quantized the same way (same calibration data,
    same rescue): the bench's own int8 records seldom fit a deploy's model.
    - The model is its canonical name (`ModelSpec.name`, from prepare_model or named_spec), never a name as typed:
      the resolution shows only when it is not the family's default, so MobileNetV2 with ImageNet weights is
      `v2_1.0` whether asked for as `v2_1.0` or `v2_1.0@224`, and the 64x64 reference model is `v2_1.0@64`.
    - The ISA flags are part of the key beside the TVM target: an `mcpu` name alone does not say whether a host
      (or a virtual machine's CPU) has AVX-512 or VNNI, and schedules measured with one ISA mislead on another.
    - The TVM target goes in whole, its `num-cores` (the build's thread count) included: MetaSchedule sizes a
      schedule's parallel loops for that many cores, and each record's run time was measured on a library built
      for them. A record tuned at 1 thread is valid code at 2, but it won at 1 thread and need not be the best at
      2 (nor beat the default schedule there). So a database serves builds of one thread count: `make
      tvm-tune-bench` tunes at the x86 target's (`--threads target`), so the deploys on this host apply it, and
      the bench's report names the thread count each database serves (`database_threads`)."""
    key = {"target": spec, "isa": sorted(set(isa))}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("tvm-tuning", f"{model.name}-{precision}-{spec.get('mcpu', 'generic')}-{digest}")


def database_records(folder: Path) -> int:
    """How many tuning records a database holds (0 when it does not exist)."""
    records = folder / "database_tuning_record.json"
    if not records.exists():
        return 0
    with open(records) as handle:
        return sum(1 for line in handle if line.strip())


def _build_without_tensor_intrinsics(mod, target, _params):
    """MetaSchedule's default builder imports tvm.s_tir.tensor_intrin, which alone can outlast the build
    timeout on 2 cores; the CPU schedules here do not need it."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def import_onnx(path: Path, spec: dict[str, Any], integer: bool = False, dot: DotKernel | str | None = "auto"):
    """(Relax module legalized and fused, ready to tune or compile; the integer lowering's report or None).

    `integer` lowers a QDQ graph's quantized convolutions to int8 kernels instead of TVM's fake-quant; `dot` is
    the target's dot-product kernel for them ("auto": from the spec, edgemb/backends/tvm_dot.py; None: none)."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(path)), keep_params_in_input=False)
    report = None
    if integer:
        mod, report = lower_qdq(mod, spec_kernel(spec) if dot == "auto" else dot)
        if not report.integer_ops:
            raise EdgembError(f"{path.name} has no quantized convolution TVM could lower to int8: pass a QDQ "
                              f"model from `edgemb quantize`")
    else:
        mod = float_nhwc(mod)
    with tvm.target.Target(spec):
        mod = relax.transform.DecomposeOpsForInference()(mod)
        mod = relax.transform.CanonicalizeBindings()(mod)
        return relax.get_pipeline("zero")(mod), report


def dominant_tasks(mod, spec: dict[str, Any], share: float = DOMINANT_SHARE) -> list[tuple[Any, float]]:
    """The tuning tasks worth trials: sorted by FLOPs x call count, the fewest that cover `share` of the total.

    The int8 lowering's dot-product and depthwise kernels are left out: their schedules are written for the
    target's instruction (edgemb/backends/tvm_dot.py), which MetaSchedule's generic rules would not use. So are
    functions that already have a schedule (already_scheduled)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks = [t for t in ms.relax_integration.extract_tasks(mod, tvm.target.Target(spec))
             if not hand_scheduled(t) and not already_scheduled(t)]
    scored = sorted(((t, estimate_tir_flops(t.dispatched[0]) * t.weight) for t in tasks), key=lambda p: -p[1])
    total = sum(score for _, score in scored) or 1.0
    kept, covered = [], 0.0
    for task, score in scored:
        if covered >= share * total:
            break
        kept.append((task, score))
        covered += score
    return kept


def hand_scheduled(task) -> bool:
    """A task whose function the int8 lowering schedules itself (its tvm_dot attributes)."""
    for func in task.dispatched[0].functions.values():
        attrs = getattr(func, "attrs", None) or {}
        if any(key in attrs for key in (ATTR_INTRIN, ATTR_DEPTHWISE)):
            return True
    return False


def already_scheduled(task) -> bool:
    """A task whose function already has a schedule (`tirx.is_scheduled`, as the default schedules leave it).

    MetaSchedule cannot tune it: its design space is the root block's parallel/vectorize/unroll annotations on loops
    that are already parallel and vectorized, every replay fails in postprocessing, and each batch comes back
    empty (V2@224: 0 trials in 10 minutes, 479 empty batches, when the module had been compiled before tuning)."""
    return any(bool(getattr(func, "attrs", None) and func.attrs.get("tirx.is_scheduled"))
               for func in task.dispatched[0].functions.values())


def scheduled_functions(mod) -> list[str]:
    """The module's TIR functions that already have a schedule (none in a module from import_onnx)."""
    from tvm import tirx

    return sorted(gv.name_hint for gv, func in mod.functions_items()
                  if isinstance(func, tirx.PrimFunc) and func.attrs is not None and func.attrs.get("tirx.is_scheduled"))


@contextlib.contextmanager
def stderr_lines() -> Iterator[Callable[[str], None]]:
    """A line writer to this process's stderr as it is now: native_output_captured() redirects file descriptor 2
    while MetaSchedule runs, and the progress lines must still reach the user (terminal or CI log)."""
    sys.stderr.flush()
    try:
        fd = os.dup(2)
    except OSError:  # no file descriptor 2 (a daemon): Python's stderr, whatever it is
        yield lambda line: print(line, file=sys.stderr, flush=True)
        return
    with os.fdopen(fd, "w", buffering=1) as stream:
        yield lambda line: print(line, file=stream, flush=True)


def tune(mod, spec: dict[str, Any], database: Path, trials: int, rpc: Any = None,
         share: float = DOMINANT_SHARE, seconds: float | None = None, log: Callable[[str], None] | None = None,
         label: str = "tune", every: float | None = None) -> TuningSummary:
    """MetaSchedule (replay-trace): up to `trials` candidates for the dominant tasks, measured on this host
    or, with `rpc` (an rpc:// device), on the board behind a TVM RPC tracker (candidates cross-compiled here).

    Records append to `database`, which every later build of the same model+target+ISA reuses: trials these
    tasks already have there count toward `trials` (a second deploy tunes only the rest, or not at all).
    `seconds` is a wall-clock budget for the search (None: none; the setup before it, mostly TVM's one-time
    imports, is reported apart): when it is spent, tuning stops after the batches being measured (at most one
    per task) and every record so far stays. `log` gets a progress line every `every` seconds (default: each
    batch on a terminal, every PROGRESS_SECONDS in a log; stderr when no log is given).
    Each tuned task's default schedule is measured the same way, once per database and within the budget, and
    recorded beside the trials (not as one): the library compiles the faster of it and the best tuned record."""
    if log is None:
        with stderr_lines() as write:
            return tune(mod, spec, database, trials, rpc, share, seconds, write, label, every)
    import tvm
    from tvm.s_tir import meta_schedule as ms

    started = time.monotonic()
    quiet = logging.getLogger("tvm.s_tir.meta_schedule")
    quiet.setLevel(logging.INFO if show_progress() else logging.WARNING)
    kept = dominant_tasks(mod, spec, share)
    summary = TuningSummary(trials, seconds, tasks=len(kept))
    scheduled = scheduled_functions(mod)
    if scheduled:  # dlight's default schedules ran on this module: MetaSchedule cannot tune those functions
        log(f"{label}: {len(scheduled)} functions already have a schedule (tirx.is_scheduled), MetaSchedule "
            f"cannot tune them: tune the module import_onnx returns")
    if not kept:
        summary.stopped_by = "no task to tune"
        summary.seconds = round(time.monotonic() - started, 1)
        log(f"{label}: no task left for MetaSchedule: no tuning")
        return summary
    database.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(database))
    target = tvm.target.Target(spec)
    mods = [task.dispatched[0] for task, _ in kept]
    task_weights = [float(task.weight) for task, _ in kept]
    defaults = [default_schedule_of(m, target, default_schedule) for m in mods]
    summary.records_reused = summary.task_records = task_records(db, mods, defaults)
    todo = trials - summary.records_reused
    if rpc is None:
        runner = ms.runner.LocalRunner(timeout_sec=60)
    else:
        runner = ms.runner.RPCRunner(ms.runner.RPCConfig(
            tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port, tracker_key=rpc.key,
            session_timeout_sec=int(rpc.wait_seconds)))
    cross = target_arch(spec) != host_arch()
    builder = ms.builder.LocalBuilder(f_build=_build_without_tensor_intrinsics,
                                      f_export=_export_aarch64 if cross else None, timeout_sec=BUILD_TIMEOUT_SECONDS)
    # each task's default schedule, measured like the candidates, is a record too: compile takes the faster one.
    # Measured once per database, within the budget (it is search work), before the tuning loop.
    measuring = time.monotonic()
    with native_output_captured():
        summary.default_records = default_records(
            db, mods, defaults, target, lambda schedules: measure_schedules(schedules, target, builder, runner))
    summary.default_seconds = round(time.monotonic() - measuring, 1)
    if summary.default_records:
        log(f"{label}: measured the default schedules of {summary.default_records} tasks in "
            f"{duration(summary.default_seconds)}")
    if todo <= 0:
        summary.stopped_by = ALREADY_TUNED
        log(f"{label}: reused {summary.records_reused} records of {len(kept)} tasks from {database} "
            f"(>= {trials} trials): no tuning")
        return _finish(summary, db, mods, defaults, task_weights, started, database, label, log)
    if summary.records_reused:
        log(f"{label}: reused {summary.records_reused} records of {len(kept)} tasks from {database}; "
            f"tuning {todo} more trials")
    # the budget is the search's: setup (TVM's imports, worker pools, MetaSchedule's design spaces) is not in it,
    # the default schedules' measurement is
    budget = None if seconds is None else seconds - summary.default_seconds
    every = (0.0 if show_progress() else PROGRESS_SECONDS) if every is None else every
    state = TuningProgress(total=todo, weights=task_weights, started=time.monotonic(), budget=budget, log=log,
                           label=label, every=every)
    if budget is not None and budget <= 0:  # the default schedules took it all
        state.start()
        state.stopped_by_time = True
    else:
        with named_handlers_only(quiet):  # sets up MetaSchedule's logging
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(  # new candidates on a rerun
                [task for task, _ in kept], str(database),
                strategy=ms.search_strategy.ReplayTrace(REPLAY_FAIL_COUNT), seed=summary.records_reused)
        state.weights = [float(w) for w in weights]
        with native_output_captured(), named_handlers_only(quiet):
            ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(database), max_trials_global=todo,
                          num_trials_per_iter=min(16, todo), cost_model="random", builder=builder, runner=runner,
                          database=db, measure_callbacks=progress_callbacks(state),
                          task_scheduler=deadline_scheduler(state))
    summary.trials, summary.failed_trials = state.trials, state.failed
    summary.setup_seconds = round(state.started - started - summary.default_seconds, 1)
    summary.stopped_by = (STOPPED_BY_TIME if state.stopped_by_time else NO_CANDIDATES if state.nothing_left
                          else summary.stopped_by)
    summary.barren_tasks = sum(1 for e in state.empty if e)
    summary.best_ms = None if state.best_ms() is None else round(state.best_ms(), 4)
    return _finish(summary, db, mods, defaults, task_weights, started, database, label, log)


def _finish(summary: TuningSummary, db, mods, defaults, weights: list[float], started: float, database: Path,
            label: str, log: Callable[[str], None]) -> TuningSummary:
    """The summary's database fields (trials held, what compile will apply) and the last line of a tuning run."""
    summary.task_records = task_records(db, mods, defaults)
    chosen = choices(db, mods, defaults)
    summary.default_ms = _rounded(weighted_sum(chosen.default_ms, weights))
    summary.chosen_ms = _rounded(weighted_sum(chosen.chosen_ms, weights))
    summary.tasks_on_default = sum(chosen.on_default)
    summary.seconds = round(time.monotonic() - started, 1)
    if summary.stopped_by == ALREADY_TUNED:
        line = f"{label}: {summary.task_records} records of {len(mods)} tasks in {database}"
    else:
        best = "-" if summary.best_ms is None else f"{summary.best_ms:.3f} ms"
        barren = f"; {summary.barren_tasks} tasks yielded no candidate" if summary.barren_tasks else ""
        searched = summary.seconds - summary.setup_seconds  # the budget's: default schedules, then the search
        line = (f"{label}: {summary.trials} trials in {duration(searched)} (stopped by {summary.stopped_by}; setup "
                f"{duration(summary.setup_seconds)}), best {best}; {summary.task_records} records of {len(mods)} "
                f"tasks in {database}{barren}")
    if summary.chosen_ms is not None:
        default = "-" if summary.default_ms is None else f"{summary.default_ms:.3f} ms"
        line += (f"; compiled: {summary.chosen_ms:.3f} ms (default schedules {default}, kept for "
                 f"{summary.tasks_on_default} of {len(mods)} tasks)")
    log(line)
    return summary


def _rounded(value: float | None) -> float | None:
    """4 decimals, None kept."""
    return None if value is None else round(value, 4)


@contextlib.contextmanager
def named_handlers_only(logger: logging.Logger):
    """MetaSchedule rebuilds its logging config from the names of its logger's handlers and fails on an unnamed
    one (`'NoneType' object has no attribute 'format'`): one that pytest's log capture, or an application,
    left there made the next tuning run in the process fail. Unnamed handlers sit out the tuning run."""
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for handler in unnamed:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in unnamed:
            logger.addHandler(handler)


def tune_budget(trials: int, seconds: float | None) -> float | None:
    """The wall-clock budget of a tuning run: DEFAULT_TUNE_SECONDS unless given, None (no limit) for 0."""
    if trials <= 0:
        return None
    if seconds is None:
        return DEFAULT_TUNE_SECONDS
    return float(seconds) or None


def _export_aarch64(rt_mod) -> str:
    """MetaSchedule builder export for an aarch64 board: the candidate cross-compiled to a shared library."""
    import tempfile

    from tvm.support import cc

    path = str(Path(tempfile.mkdtemp(prefix="edgemb-ms-")) / "candidate.so")
    rt_mod.export_library(path, fcompile=cc.cross_compiler(CROSS_COMPILERS["aarch64"][0]))
    return path


def tuning_device(spec: dict[str, Any]):
    """The rpc:// board named by $EDGEMB_TVM_TUNE_RPC (tuning an ARM target on its real board), else None."""
    uri = os.environ.get(TUNE_RPC_ENV)
    if not uri:
        return None
    from edgemb.device.devices import RpcDevice, open_device

    device = open_device(uri)
    if not isinstance(device, RpcDevice):
        raise EdgembError(f"${TUNE_RPC_ENV}={uri!r} must be rpc://TRACKER_HOST:PORT/KEY (a TVM RPC tracker)")
    return device


def scheduled_module(mod, spec: dict[str, Any], database: Path | None) -> tuple[Any, list[str]]:
    """(A copy of `mod` with every function scheduled, the functions the database scheduled): the database's best
    record for each task it holds (tuned, or the default schedule measured beside the trials when that was faster:
    tvm_tuning.default_records), the default schedules for the rest.

    `mod` itself is left as it was: dlight's ApplyDefaultSchedule replaces the functions of the module it is given
    in place (IRModule.__setitem__), and a module scheduled that way can no longer be tuned (already_scheduled)."""
    import tvm
    from tvm import relax

    mod = mod.clone()  # a new IRModule over the same functions: the pass replaces entries of this one
    before = set(scheduled_functions(mod))
    with tvm.target.Target(spec) as target:
        if database is not None:
            mod = relax.transform.MetaScheduleApplyDatabase(str(database))(mod)
        from_database = [name for name in scheduled_functions(mod) if name not in before]
        mod = default_schedule_pass(target)(mod)  # what the database does not cover: not naive loops
    return mod, from_database


def compile_library(mod, spec: dict[str, Any], database: Path | None, out: Path) -> list[str]:
    """Schedule (scheduled_module: the tuning database when there is one), compile, and export the shared library
    (cross for ARM); returns the functions the database scheduled. `mod` is left as it was."""
    import tvm

    mod, from_database = scheduled_module(mod, spec, database)
    with native_output_captured():
        executable = tvm.compile(mod, target=tvm.target.Target(spec))
    arch = target_arch(spec)
    if arch == host_arch():
        executable.export_library(str(out))
        return from_database
    if arch not in CROSS_COMPILERS:
        raise EdgembError(f"edgemb cannot cross-compile TVM libraries for {arch} yet")
    compiler, package = CROSS_COMPILERS[arch]
    if shutil.which(compiler) is None:
        raise EdgembError(f"cross-compiling for {arch} needs {compiler}: install Debian's {package} "
                          f"(`sudo apt-get install {package}`, part of `make setup`)")
    from tvm.support import cc

    executable.export_library(str(out), fcompile=cc.cross_compiler(compiler))
    return from_database


def target_arch(spec: dict[str, Any]) -> str:
    """aarch64 for an aarch64 mtriple, else this host's architecture."""
    triple = spec.get("mtriple", "")
    return triple.split("-")[0] if triple else host_arch()


class TvmRunner:
    """A Relax VM over a library built for this host."""

    def __init__(self, path: Path) -> None:
        import tvm
        from tvm import relax

        self._tvm = tvm
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits, one sample at a time."""
        return np.concatenate([self.vm["main"](self._tvm.runtime.tensor(np.ascontiguousarray(s[None]))).numpy()
                               for s in batch.astype(np.float32)])

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output (a detector's tuple comes back as a TVM array of tensors), stacked per output."""
        runs = []
        for s in batch.astype(np.float32):
            result = self.vm["main"](self._tvm.runtime.tensor(np.ascontiguousarray(s[None])))
            runs.append([result.numpy()] if hasattr(result, "numpy") else [r.numpy() for r in result])
        return [np.concatenate(column) for column in zip(*runs, strict=True)]


class TvmBackend:
    """TVM behind the common interface."""

    name = "tvm"

    def available(self) -> tuple[bool, str]:
        """apache-tvm is installed by `make setup` (after litert-torch, see the Makefile)."""
        return importable(("tvm", "tvm.relax.frontend.onnx"), "apache-tvm")

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """fp32 or int8 library for the target; tuned on this host when the target is this host and trials > 0."""
        if precision not in PRECISIONS:
            raise EdgembError(f"the TVM backend builds {' and '.join(PRECISIONS)}, not {precision!r}")
        spec = tvm_target_dict(target)
        arch = target_arch(spec)
        # int8 lowers the quantize stage's QDQ model (the one onnxruntime int8 runs), never a model of its own
        source = inputs.float_onnx if precision == "fp32" else quantize_stage_model(inputs.options, self.name)
        mod, lowering = import_onnx(source, spec, integer=precision == "int8",
                                    dot=choose_kernel(target.isa, target.arch))
        database = database_dir(inputs.prepared.spec, precision, spec, target.isa)
        trials = int(inputs.options.get("tune_trials", DEFAULT_TUNE_TRIALS))
        seconds = tune_budget(trials, inputs.options.get("tune_seconds"))
        tuning: dict[str, Any] = {"trials_requested": trials, "seconds_budget": seconds, "database": str(database)}
        board = tuning_device(spec) if trials > 0 else None
        if trials > 0 and (arch == host_arch() or board is not None):
            with file_lock(database.with_name(f".{database.name}.lock"), f"TVM tuning database {database}"):
                summary = tune(mod, spec, database, trials, board, seconds=seconds,  # one tuner per database
                               label=f"  tune: tvm {precision} {inputs.prepared.spec.name}")
            tuning.update(summary.as_dict())
            tuning["measured_on"] = board.uri if board is not None else "this host"
        elif trials > 0:
            tuning["skipped"] = (f"tuning an {arch} target needs its board: set {TUNE_RPC_ENV}="
                                 f"rpc://TRACKER:PORT/KEY (see README, ARM boards)")
        tuning["records"] = database_records(database)
        path = out_dir / ("model.tvm.so" if precision == "fp32" else f"model.{precision}.tvm.so")
        tuning["functions_from_database"] = len(compile_library(mod, spec, database if tuning["records"] else None,
                                                                path))
        extra: dict[str, Any] = {"arch": arch, "tvm_target": spec, "tuning": tuning}
        notes = []
        if lowering is not None:
            extra["integer_lowering"] = lowering.as_dict()
            if lowering.float_ops:  # a fallback shows in the report's note column, not only in compile.json
                notes.append(lowering.float_note())
        if arch != host_arch():
            notes.insert(0, f"cross-compiled for {arch}: runs on the board (--device) or the emulated board")
            return Artifact(self.name, precision, path, NEEDS_DEVICE, "; ".join(notes), extra)
        return Artifact(self.name, precision, path, detail="; ".join(notes), extra=extra)

    def load(self, artifact: Artifact, target: Target) -> TvmRunner:
        """Only libraries built for this host's architecture load here."""
        return TvmRunner(artifact.path)
