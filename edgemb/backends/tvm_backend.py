"""Apache TVM (0.27, Relax): ONNX import, MetaSchedule tuning with a cached database, cross-compiled library.

fp32 builds the float graph. int8 takes the quantize stage's QDQ model (options["qdq_model"], the model
onnxruntime int8 runs; without it the build is an EdgembError, never a fallback) and lowers it to integer kernels
(edgemb/backends/tvm_lowering.py): TVM 0.27 alone would import it as fake-quant. Tuning spends its trials on the
tasks that dominate (FLOPs x calls).
ARM libraries are cross-compiled with Debian's aarch64 g++ and run only on the board (real or emulated).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.backends.base import NEEDS_DEVICE, Artifact, BuildInputs, importable, quantize_stage_model
from edgemb.backends.tvm_dot import ATTR_DEPTHWISE, ATTR_INTRIN, DotKernel, choose_kernel, spec_kernel
from edgemb.backends.tvm_lowering import float_nhwc, lower_qdq
from edgemb.backends.tvm_schedules import default_schedule_pass
from edgemb.cache import cache_dir
from edgemb.device.runner import board_arch
from edgemb.errors import EdgembError
from edgemb.locking import file_lock
from edgemb.progress import show_progress
from edgemb.quiet import native_output_captured
from edgemb.targets import Target

CROSS_COMPILERS = {"aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")}
PRECISIONS = ("fp32", "int8")
TUNE_RPC_ENV = "EDGEMB_TVM_TUNE_RPC"
DEFAULT_TUNE_TRIALS = 0  # deploys stay fast; `--tune-trials N` (or a cached database) makes TVM competitive
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


def database_dir(model_name: str, spec: dict[str, Any]) -> Path:
    """Tuning records live per model+resolution+target in the user cache and are reused by every build."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("tvm-tuning", f"{model_name}-{spec.get('mcpu', 'generic')}-{digest}")


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
    target's instruction (edgemb/backends/tvm_dot.py), which MetaSchedule's generic rules would not use."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks = [t for t in ms.relax_integration.extract_tasks(mod, tvm.target.Target(spec)) if not hand_scheduled(t)]
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


def tune(mod, spec: dict[str, Any], database: Path, trials: int, rpc: Any = None,
         share: float = DOMINANT_SHARE) -> float:
    """MetaSchedule (replay-trace): `trials` candidates spent on the dominant tasks only, measured on this host
    or, with `rpc` (an rpc:// device), on the board behind a TVM RPC tracker (candidates cross-compiled here);
    records append to `database`, which every later build of the same model+target reuses."""
    from tvm.s_tir import meta_schedule as ms

    started = time.perf_counter()
    quiet = logging.getLogger("tvm.s_tir.meta_schedule")
    quiet.setLevel(logging.INFO if show_progress() else logging.WARNING)
    kept = dominant_tasks(mod, spec, share)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        [task for task, _ in kept], str(database), strategy="replay-trace", seed=0)
    if rpc is None:
        runner = ms.runner.LocalRunner(timeout_sec=60)
    else:
        runner = ms.runner.RPCRunner(ms.runner.RPCConfig(
            tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port, tracker_key=rpc.key,
            session_timeout_sec=int(rpc.wait_seconds)))
    cross = target_arch(spec) != host_arch()
    builder = ms.builder.LocalBuilder(f_build=_build_without_tensor_intrinsics,
                                      f_export=_export_aarch64 if cross else None, timeout_sec=BUILD_TIMEOUT_SECONDS)
    with native_output_captured():
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(database), max_trials_global=trials,
                      num_trials_per_iter=min(16, trials), cost_model="random", builder=builder, runner=runner)
    return time.perf_counter() - started


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


def compile_library(mod, spec: dict[str, Any], database: Path | None, out: Path) -> None:
    """Apply the tuning database when there is one, compile, and export the shared library (cross for ARM)."""
    import tvm
    from tvm import relax

    with tvm.target.Target(spec) as target:
        if database is not None:
            mod = relax.transform.MetaScheduleApplyDatabase(str(database))(mod)
        mod = default_schedule_pass(target)(mod)  # what the database does not cover: not naive loops
    with native_output_captured():
        executable = tvm.compile(mod, target=tvm.target.Target(spec))
    arch = target_arch(spec)
    if arch == host_arch():
        executable.export_library(str(out))
        return
    if arch not in CROSS_COMPILERS:
        raise EdgembError(f"edgemb cannot cross-compile TVM libraries for {arch} yet")
    compiler, package = CROSS_COMPILERS[arch]
    if shutil.which(compiler) is None:
        raise EdgembError(f"cross-compiling for {arch} needs {compiler}: install Debian's {package} "
                          f"(`sudo apt-get install {package}`, part of `make setup`)")
    from tvm.support import cc

    executable.export_library(str(out), fcompile=cc.cross_compiler(compiler))


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
        database = database_dir(f"{inputs.prepared.spec.name}-{precision}", spec)
        trials = int(inputs.options.get("tune_trials", DEFAULT_TUNE_TRIALS))
        tuning: dict[str, Any] = {"trials_requested": trials, "database": str(database)}
        board = tuning_device(spec) if trials > 0 else None
        if trials > 0 and (arch == host_arch() or board is not None):
            with file_lock(database.with_name(f".{database.name}.lock"), f"TVM tuning database {database}"):
                tuning["seconds"] = round(tune(mod, spec, database, trials, board), 1)  # one tuner per database
            tuning["measured_on"] = board.uri if board is not None else "this host"
        elif trials > 0:
            tuning["skipped"] = (f"tuning an {arch} target needs its board: set {TUNE_RPC_ENV}="
                                 f"rpc://TRACKER:PORT/KEY (see README, ARM boards)")
        tuning["records"] = database_records(database)
        path = out_dir / ("model.tvm.so" if precision == "fp32" else f"model.{precision}.tvm.so")
        compile_library(mod, spec, database if tuning["records"] else None, path)
        extra: dict[str, Any] = {"arch": arch, "tvm_target": spec, "tuning": tuning}
        if lowering is not None:
            extra["integer_lowering"] = lowering.as_dict()
        if arch != host_arch():
            return Artifact(self.name, precision, path, NEEDS_DEVICE,
                            f"cross-compiled for {arch}: runs on the board (--device) or the emulated board",
                            extra)
        return Artifact(self.name, precision, path, extra=extra)

    def load(self, artifact: Artifact, target: Target) -> TvmRunner:
        """Only libraries built for this host's architecture load here."""
        return TvmRunner(artifact.path)
