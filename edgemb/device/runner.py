"""Device-side runner: the one program edgemb copies to a board (real, emulated or this host).

It depends on numpy and the artifact's own runtime only, never on edgemb, torch or onnx, so a board needs
nothing else installed. It loads one artifact (.tflite, OpenVINO .xml, TVM .so, .onnx), runs a batch of
preprocessed NCHW float32 inputs one sample at a time (the way a robot feeds frames), and writes every output
of the network (outputs.npz: `output_0`, `output_1`, ... in the order of result.json's `output_names`) and
latency samples with percentiles (result.json). Exit codes: 0 ran, 3 a runtime or architecture problem (the
JSON still says which, so the host can explain it).

    python3 runner.py ARTIFACT INPUTS.npy OUT_DIR [--warmup N] [--runs N] [--threads N] [--output=NAME ...]
    python3 runner.py --jobs JOBS.json   (several artifacts on one input batch in one process, each job's outcome
                                          in its own OUT_DIR/result.json: see run_jobs)

Outputs travel by the model's ONNX output names (`logits`; a detector's `cls_logits`, `bbox_regression`).
The host passes them with `--output` in ONNX order; each session says which names the artifact itself
gives each output, and `name_outputs` matches them by name where it can and by position otherwise:
- .onnx: the graph's own output names.
- OpenVINO .xml: `ov.convert_model` keeps every ONNX output's tensor name (and NNCF's int8 IR keeps them),
  so the outputs are matched by name; the position fallback (an IR from elsewhere) is the Result order,
  which `ov.convert_model` takes from the ONNX graph's output list.
- .tflite: no ONNX names (litert-torch converts from PyTorch); the signature's `output_0`, `output_1`, ...
  follow the PyTorch forward's tuple order, which is also the order `torch.onnx.export` gives `output_names`.
  `get_output_details()` lists the flatbuffer's tensors, in no promised order, so outputs are read in
  signature order (as backends.tflite_backend.TfliteRunner.run_all does on the host).
- TVM .so: no names; the Relax `main` returns its tuple in the ONNX graph's output order (relax's from_onnx
  builds it from `graph.output`).
A count that differs from the host's names is refused, never guessed at.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import struct
import sys
import time

RUNTIME_EXIT = 3
JOB_LINE = "edgemb-runner-job"  # `--jobs` mode: starts each job's stdout line
# ELF e_machine values of the architectures edgemb builds for.
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "arm", "armv6l": "arm", "i686": "x86"}
PIP_PACKAGES = {"numpy": "numpy", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                "openvino": "openvino", "tvm": "apache-tvm", "onnxruntime": "onnxruntime"}


class RuntimeProblem(Exception):
    """Something the board lacks or an artifact that cannot run on it; reported as JSON, exit 3."""


def board_arch() -> str:
    """This machine's architecture in ELF terms (aarch64, x86_64, arm)."""
    machine = platform.machine().lower()
    return MACHINE_ALIASES.get(machine, machine)


def elf_arch(path: str) -> str:
    """The architecture a shared library was compiled for, read from its ELF header."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    if header[:4] != b"\x7fELF":
        raise RuntimeProblem(f"{os.path.basename(path)} is not an ELF shared library")
    endian = "<" if header[5] == 1 else ">"
    machine = struct.unpack(endian + "H", header[18:20])[0]
    return ELF_MACHINES.get(machine, f"elf-machine-{machine}")


def need(module: str):
    """Import a runtime module or say which pip package the board is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = PIP_PACKAGES.get(module.split(".")[0], module)
        raise RuntimeProblem(f"this board has no {module} ({exc}); install it with `pip install {package}`") \
            from None


def tflite_session(path: str, threads: int):
    """ai-edge-litert where the board has it, else tflite-runtime (the only wheel for 32-bit armv7)."""
    np = need("numpy")
    try:
        from ai_edge_litert.interpreter import Interpreter
        runtime = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
            runtime = "tflite-runtime"
        except ImportError:
            raise RuntimeProblem("this board has neither ai-edge-litert nor tflite-runtime; install one with "
                                 "`pip install ai-edge-litert` (or `pip install tflite-runtime` on armv7)") from None
    interpreter = Interpreter(model_path=path, num_threads=threads or None)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outs, keys = tflite_outputs(interpreter)

    def dequantized(detail):
        y = interpreter.get_tensor(detail["index"])
        if np.issubdtype(detail["dtype"], np.integer):
            scale, zero = detail["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def run(sample):
        x = sample.transpose(1, 2, 0)[None]  # NCHW -> NHWC
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        return [dequantized(detail) for detail in outs]

    return run, runtime, keys


def tflite_outputs(interpreter) -> tuple[list, list[tuple[str, ...]]]:
    """Output details in signature order (`output_0`, `output_1`, ...: the PyTorch tuple order), each with its
    signature key and tensor name; the details' own order where the signature is missing or not numbered."""
    details = interpreter.get_output_details()
    by_index = {d["index"]: d for d in details}
    signatures = interpreter.get_signature_list() if hasattr(interpreter, "get_signature_list") else {}
    keys = next(iter(signatures.values())).get("outputs", []) if signatures else []
    if len(signatures) == 1 and len(keys) == len(details) and all(k.rsplit("_", 1)[-1].isdigit() for k in keys):
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        ordered = sorted(keys, key=lambda k: int(k.rsplit("_", 1)[-1]))
        indices = [runner.get_output_details()[k]["index"] for k in ordered]
        if sorted(indices) == sorted(by_index):
            names = [(k, by_index[i]["name"]) for k, i in zip(ordered, indices, strict=True)]
            return [by_index[i] for i in indices], names
    return details, [(d["name"],) for d in details]


def openvino_session(path: str, threads: int):
    """OpenVINO CPU plugin, latency mode, f32 inference hint (exact parity; int8 IRs still run int8 kernels).

    Samples are copied into the request's own input buffer and the output is read in place: wrapping each
    sample in a new ov.Tensor cost ~15 us per inference, a measurable overhead over benchmark_app.
    """
    ov = need("openvino")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    input_buffer = request.get_input_tensor(0).data
    output_buffers = [request.get_output_tensor(k).data for k in range(len(compiled.outputs))]

    def run(sample):
        input_buffer[0] = sample
        request.infer()
        return output_buffers  # read in place: the caller copies them before the next inference

    names = [tuple(sorted(output.get_names())) for output in compiled.outputs]
    return run, f"openvino {ov.__version__}", names


def tvm_session(path: str, threads: int):
    """A TVM Relax VM over the exported library; refuses a library built for another architecture."""
    built_for, here = elf_arch(path), board_arch()
    if built_for != here:
        raise RuntimeProblem(f"{os.path.basename(path)} was compiled for {built_for} but this board is {here}: "
                             f"build it for this board's target")
    if threads:
        os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    tvm = need("tvm")
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())

    def run(sample):
        return tvm_arrays(vm["main"](tvm.runtime.tensor(sample[None])))

    # The library has no names; its tuple is in the ONNX graph's output order (see the module docstring).
    return run, f"tvm {tvm.__version__}", None


def tvm_arrays(result) -> list:
    """A Relax VM result as a list of numpy arrays: one tensor, or a tuple (a detector's heads) in order."""
    return [result.numpy()] if hasattr(result, "numpy") else [part.numpy() for part in result]


def onnx_session(path: str, threads: int):
    """onnxruntime CPU session (for boards where it is the deployed runtime)."""
    ort = need("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(sample):
        return session.run(None, {name: sample[None]})

    return run, f"onnxruntime {ort.__version__}", [(output.name,) for output in session.get_outputs()]


SESSIONS = {".tflite": tflite_session, ".xml": openvino_session, ".so": tvm_session, ".onnx": onnx_session}


def name_outputs(own: list[tuple[str, ...]] | None, count: int, wanted: list[str] | None,
                 artifact: str = "the artifact") -> list[tuple[str, int]]:
    """(name, position in the artifact's outputs) for every output, in the host's order: by name where the
    artifact's own names hold each wanted name exactly once, else by position (see the module docstring).

    `own` gives each output's names as the artifact knows them (None: it has none). Without `wanted`, the
    artifact's first name of each output (`output_K` when it has none).
    """
    if wanted is None:
        return [((own[k][0] if own and own[k] else f"output_{k}"), k) for k in range(count)]
    if len(wanted) != count:
        raise RuntimeProblem(f"{artifact} has {count} output(s) but the model has {len(wanted)} "
                             f"({', '.join(wanted)}): was it built from another model? rebuild it")
    if own:
        holders = [[k for k, names in enumerate(own) if name in names] for name in wanted]
        if all(len(h) == 1 for h in holders) and len({h[0] for h in holders}) == count:
            return [(name, h[0]) for name, h in zip(wanted, holders, strict=True)]
    return [(name, k) for k, name in enumerate(wanted)]


def percentile_ms(samples: list[float], q: float) -> float:
    """Nearest-rank percentile in milliseconds (no numpy needed for the summary)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return round(ordered[rank - 1] * 1e3, 4)


def run_artifact(artifact: str, inputs: str, out_dir: str, warmup: int, runs: int, threads: int,
                 output_names: list[str] | None = None) -> dict:
    """Every output for every input sample, then `runs` timed single-sample inferences after `warmup` untimed
    ones (none when `runs` is 0)."""
    suffix = os.path.splitext(artifact)[1]
    if suffix not in SESSIONS:
        raise RuntimeProblem(f"unknown artifact type {suffix!r}; the runner knows {', '.join(SESSIONS)}")
    np = need("numpy")
    batch = np.load(inputs).astype(np.float32)
    if batch.ndim != 4:
        raise RuntimeProblem(f"inputs must be NCHW float32, got shape {batch.shape}")
    started = time.perf_counter()
    try:
        run, runtime, own_names = SESSIONS[suffix](artifact, threads)
    except RuntimeProblem:
        raise
    except Exception as exc:  # a corrupt or mislabelled file: one line that names it, not the runtime's traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RuntimeProblem(f"cannot load {os.path.basename(artifact)} as a {suffix} artifact ({first}): is it "
                             f"a complete {suffix} file? rebuild it with `edgemb compile`") from None
    load_seconds = time.perf_counter() - started
    per_sample = [[np.array(y, copy=True) for y in run(sample)] for sample in batch]
    count = len(per_sample[0]) if per_sample else len(own_names or output_names or [])
    named = name_outputs(own_names, count, output_names, os.path.basename(artifact))
    outputs = {f"output_{i}": np.concatenate([sample[k] for sample in per_sample]) for i, (_, k) in enumerate(named)}
    tmp = os.path.join(out_dir, "outputs.tmp.npz")
    np.savez(tmp, **outputs)
    os.replace(tmp, os.path.join(out_dir, "outputs.npz"))
    for i in range(warmup):
        run(batch[i % len(batch)])
    samples = []
    for i in range(runs):
        began = time.perf_counter()
        run(batch[i % len(batch)])
        samples.append(time.perf_counter() - began)
    return {
        "artifact": os.path.basename(artifact), "runtime": runtime, "arch": board_arch(),
        "python": platform.python_version(), "threads": threads, "inputs": len(batch),
        "output_names": [name for name, _ in named],
        "output_shapes": [list(outputs[f"output_{i}"].shape) for i in range(len(named))],
        "load_seconds": round(load_seconds, 3), "warmup": warmup, "runs": runs,
        "latency_ms": [round(s * 1e3, 4) for s in samples],
        # runs=0 checks outputs only (an emulated board: its timings would mean nothing)
        **{f"p{q}_ms": percentile_ms(samples, q / 100) if samples else None for q in (50, 90, 99)},
    }


def run_and_record(artifact: str, inputs: str, out_dir: str, warmup: int, runs: int, threads: int,
                   output_names: list[str] | None = None, contain: bool = False) -> int:
    """One artifact: result.json (and outputs.npz) in out_dir, or the runtime problem in result.json; its exit code.

    `contain` (a job among several) also records any other error of the runtime, so one artifact's failure
    never ends the process the others share."""
    os.makedirs(out_dir, exist_ok=True)
    result_path = os.path.join(out_dir, "result.json")
    try:
        result = run_artifact(artifact, inputs, out_dir, warmup, max(0, runs), threads, output_names)
        code = 0
    except RuntimeProblem as exc:
        result, code = {"error": str(exc), "arch": board_arch()}, RUNTIME_EXIT
    except Exception as exc:
        if not contain:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        result = {"error": f"{os.path.basename(artifact)} failed in its runtime: {type(exc).__name__}: {first}",
                  "arch": board_arch()}
        code = RUNTIME_EXIT
    tmp = result_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, result_path)
    if code:
        print(f"runner: {result['error']}", file=sys.stderr)
    return code


def run_jobs(jobs_path: str) -> int:
    """Several artifacts on one input batch in this one process, each job's out_dir as if it had run alone.

    On an emulated board, starting Python and importing numpy and a runtime costs more than checking an
    artifact's outputs (TVM's import alone takes ~20 s under qemu-user), so a deploy sends every artifact in
    one go. A line `edgemb-runner-job K/N NAME` on stdout marks each start, for the host's progress and to know
    which job a dying process was in; that job has no result.json, and the host runs it alone and the rest in
    a new process. Every job's outcome is in its own result.json: the process exits 0 once all have one.
    """
    import gc

    with open(jobs_path) as handle:
        spec = json.load(handle)
    jobs = spec["jobs"]
    for k, job in enumerate(jobs):
        print(f"{JOB_LINE} {k + 1}/{len(jobs)} {os.path.basename(job['artifact'])}", flush=True)
        run_and_record(job["artifact"], spec["inputs"], job["out_dir"], job.get("warmup", 0), job.get("runs", 0),
                       job.get("threads", 0), job.get("outputs"), contain=True)
        gc.collect()  # the previous artifact's session and buffers go before the next one loads
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--jobs"] and len(argv) == 2:
        return run_jobs(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Also: runner.py --jobs JOBS.json (several artifacts, one process).")
    parser.add_argument("artifact")
    parser.add_argument("inputs", help="NCHW float32 .npy, already preprocessed")
    parser.add_argument("out_dir")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="0: the runtime's default")
    parser.add_argument("--output", action="append", dest="outputs", metavar="NAME",
                        help="the model's output names in ONNX order, one --output=NAME each (default: the "
                             "artifact's own names, output_K where it has none)")
    args = parser.parse_args(argv)
    return run_and_record(args.artifact, args.inputs, args.out_dir, args.warmup, args.runs, args.threads,
                          args.outputs)


if __name__ == "__main__":
    sys.exit(main())
