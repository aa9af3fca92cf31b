"""Where an artifact runs: this host, the emulated board, a board over SSH, or a board from a TVM RPC tracker.

Every device answers the same question (every output, by the model's output names, for a batch of inputs plus
latency samples), so the deploy pipeline and `edgemb profile` never care which one it is. Device URIs:

    local                          this host (the device-side runner in a subprocess)
    emulated:rpi4                  the qemu-user board prepared by `edgemb device emulate rpi4`
    ssh://user@host[:port][?identity=KEY&python=PYTHON]
    rpc://tracker-host:port/KEY[?timeout=SECONDS]   (TVM libraries only)
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import numpy as np

from edgemb.cache import cache_dir
from edgemb.errors import EdgembError

RUNNER = Path(__file__).with_name("runner.py")
RUNTIME_EXIT = 3  # the runner's "this board cannot run that" exit code
SSH_UNREACHABLE = 255
# An artifact's outputs on the emulated board take 0.5-3 min (MobileNetV2 at 224, 16 samples): one silent for
# this long is stuck (a fork under qemu-user can deadlock), not slow.
EMULATED_TIMEOUT = 900.0


def single_output(outputs: dict[str, np.ndarray], name: str | None = None, where: str = "the artifact") -> np.ndarray:
    """One output by name, or without a name the only one (a classifier's logits): a detector's or segmenter's
    several outputs are never silently reduced to the first."""
    if name is not None:
        if name not in outputs:
            raise EdgembError(f"{where} has no output {name!r} (it has {', '.join(outputs) or 'none'}): was it "
                              f"built from another model? rebuild it")
        return outputs[name]
    if len(outputs) != 1:
        raise EdgembError(f"{where} has {len(outputs)} outputs ({', '.join(outputs)}): name the one you want, or "
                          f"use them all (a task's post-processing takes every output by name)")
    return next(iter(outputs.values()))


@dataclass
class Measurement:
    """What a device returns: every output for every input, by the model's output names (ONNX order), and the
    runner's timing summary."""

    outputs: dict[str, np.ndarray]
    result: dict[str, Any]
    device: str
    emulated: bool = False

    def output(self, name: str | None = None) -> np.ndarray:
        """One output by name, or the only one (a classifier's logits); see `single_output`."""
        return single_output(self.outputs, name, self.device)

    def latency(self) -> dict[str, Any]:
        """The report's latency block."""
        r = self.result
        return {"p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "p99_ms": r["p99_ms"], "runs": r["runs"],
                "device": self.device, "emulated": self.emulated, "threads": r.get("threads"),
                "samples_ms": r.get("latency_ms", [])}


def combine_rounds(measurements: list[Measurement]) -> dict[str, Any]:
    """One latency block from interleaved timing rounds: percentiles over every sample, plus the spread.

    `spread_ms` is the median absolute deviation of the rounds' medians (with one round, of its samples): how
    far a repeat of this measurement typically lands, robust to one round disturbed by a busy spell.
    `round_p50_ms` keeps every round's median.
    """
    from edgemb.device.runner import percentile_ms

    first = measurements[0].latency()
    samples = [v for m in measurements for v in m.result.get("latency_ms", [])]
    round_p50 = [m.result["p50_ms"] for m in measurements]
    basis = round_p50 if len(round_p50) > 1 or not samples else samples
    block = {"rounds": len(measurements), "round_p50_ms": round_p50, "spread_ms": round(_mad(basis), 4)}
    if not samples:  # a runner that reports percentiles only
        return {**first, **block}
    seconds = [v / 1e3 for v in samples]
    return {**first, "p50_ms": percentile_ms(seconds, 0.5), "p90_ms": percentile_ms(seconds, 0.9),
            "p99_ms": percentile_ms(seconds, 0.99), "runs": len(samples), **block, "samples_ms": samples}


def _mad(values: list[float]) -> float:
    """Median absolute deviation from the median (the mean of the middle pair for an even count)."""
    def median(xs: list[float]) -> float:
        ordered, n = sorted(xs), len(xs)
        return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2

    centre = median(values)
    return median([abs(v - centre) for v in values])


class Device(Protocol):
    uri: str
    emulated: bool

    def measure(self, artifact: Path, inputs: np.ndarray, runs: int, warmup: int, threads: int,
                output_names: Sequence[str] | None = None) -> Measurement:
        """Run the artifact on every input (every output, named by `output_names` in ONNX order, else by the
        artifact's own names), then time `runs` single-sample inferences."""
        ...


def runner_options(runs: int, warmup: int, threads: int, output_names: Sequence[str] | None) -> list[str]:
    """The runner's command-line options (its --output names in ONNX order)."""
    return ["--runs", str(runs), "--warmup", str(warmup), "--threads", str(threads),
            *(f"--output={name}" for name in output_names or ())]


def read_outputs(out_dir: Path, result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The runner's outputs.npz as {output name: array}, in the order result.json names them."""
    with np.load(out_dir / "outputs.npz") as stored:
        return {name: stored[f"output_{i}"] for i, name in enumerate(result["output_names"])}


def artifact_files(artifact: Path) -> list[Path]:
    """An OpenVINO IR is two files (.xml + .bin); every other artifact is one."""
    files = [artifact]
    if artifact.suffix == ".xml":
        files.append(artifact.with_suffix(".bin"))
    missing = [f for f in files if not f.exists()]
    if missing:
        raise EdgembError(f"artifact file not found: {missing[0]}")
    return files


def _read_runner_output(out_dir: Path, code: int, stderr: str, where: str) -> dict[str, Any]:
    """The runner's JSON; its runtime problems become EdgembErrors that name the fix."""
    result_path = out_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    if code == RUNTIME_EXIT and result and "error" in result:
        raise EdgembError(f"{where}: {result['error']}")
    if code != 0 or result is None:
        raise EdgembError(f"{where}: the runner failed (exit {code}): {stderr.strip()[-600:]}")
    return result


@dataclass
class SubprocessDevice:
    """A runner started on this machine: natively (local) or under qemu-user (emulated)."""

    uri: str
    command: list[str]
    env: dict[str, str] | None = None
    emulated: bool = False
    timeout: float = 3600

    def measure(self, artifact: Path, inputs: np.ndarray, runs: int, warmup: int, threads: int,
                output_names: Sequence[str] | None = None) -> Measurement:
        files = artifact_files(artifact)
        with tempfile.TemporaryDirectory(prefix="edgemb-run-") as tmp:
            work = Path(tmp)
            np.save(work / "inputs.npy", inputs.astype(np.float32))
            process = _start_group([*self.command, str(RUNNER), str(files[0]), str(work / "inputs.npy"),
                                    str(work / "out"), *runner_options(runs, warmup, threads, output_names)],
                                   self.env, self.uri, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                _, stderr = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise EdgembError(f"{self.uri}: {artifact.name} gave no answer within {self.timeout:.0f} s; "
                                  f"stopped") from None
            finally:
                _kill_group(process)  # a runtime's forked helper must not outlive the run
            summary = _read_runner_output(work / "out", process.returncode, stderr, self.uri)
            outputs = read_outputs(work / "out", summary)
        return Measurement(outputs, summary, self.uri, self.emulated)

    def check_outputs(self, artifacts: Sequence[Path], inputs: np.ndarray, threads: int,
                      output_names: Sequence[str] | None = None,
                      started: Callable[[int], None] | None = None) -> list[Measurement | EdgembError]:
        """Every artifact's outputs on `inputs`, untimed, in one runner process (runner.run_jobs): one Python
        start and one import per runtime instead of one per artifact, which under qemu-user is most of the time.

        `started(k)` is called as artifact k begins. A job the process dies in (a runtime's segfault) is run
        again alone, for its own error, and the jobs after it in a new process; a job silent for `timeout`
        seconds is answered with a timeout. So one artifact's crash costs the others their check never."""
        answers: list[Measurement | EdgembError | None] = [None] * len(artifacts)
        with tempfile.TemporaryDirectory(prefix="edgemb-run-") as tmp:
            work = Path(tmp)
            np.save(work / "inputs.npy", inputs.astype(np.float32))
            jobs: dict[int, dict[str, Any]] = {}
            for k, artifact in enumerate(artifacts):
                try:
                    jobs[k] = {"artifact": str(artifact_files(artifact)[0]), "out_dir": str(work / f"out{k}"),
                               "threads": threads, "outputs": list(output_names) if output_names else None}
                except EdgembError as exc:
                    answers[k] = exc
            todo = list(jobs)
            while todo:
                batch = _JobBatch(self, work, [jobs[k] for k in todo], todo, started)
                batch.run()
                for k in todo:
                    out = Path(jobs[k]["out_dir"])
                    if (out / "result.json").exists():
                        answers[k] = _answer(out, self.uri, self.emulated, batch.stderr)
                todo = [k for k in todo if answers[k] is None]
                if not todo:
                    break
                if batch.current is None:  # it never started a job: the board's Python itself failed
                    failure = EdgembError(f"{self.uri}: the runner failed (exit {batch.returncode}): "
                                          f"{batch.stderr.strip()[-600:]}")
                    for k in todo:
                        answers[k] = failure
                    break
                k = batch.current
                if answers[k] is not None:  # it died between two jobs: the rest go to a new process
                    continue
                if batch.timed_out:
                    answers[k] = EdgembError(f"{self.uri}: {artifacts[k].name} gave no outputs within "
                                             f"{self.timeout:.0f} s; stopped")
                else:  # the process died in job k: alone, it fails (or passes) on its own
                    try:
                        answers[k] = self.measure(artifacts[k], inputs, 0, 0, threads, output_names)
                    except EdgembError as exc:
                        answers[k] = exc
                todo = [j for j in todo if j != k]
        return answers  # type: ignore[return-value]


class _JobBatch:
    """One `runner.py --jobs` process: which job it is in, whether the watchdog stopped it, its stderr."""

    def __init__(self, device: SubprocessDevice, work: Path, jobs: list[dict[str, Any]], indices: list[int],
                 started: Callable[[int], None] | None) -> None:
        self.device, self.work, self.jobs, self.indices, self.started = device, work, jobs, indices, started
        self.current: int | None = None  # the artifact index of the job last started
        self.timed_out = False
        self.returncode: int | None = None
        self.stderr = ""

    def run(self) -> None:
        from edgemb.device.runner import JOB_LINE

        spec = self.work / "jobs.json"
        spec.write_text(json.dumps({"inputs": str(self.work / "inputs.npy"), "jobs": self.jobs}))
        with open(self.work / "stderr.txt", "w+") as stderr:
            process = _start_group([*self.device.command, str(RUNNER), "--jobs", str(spec)], self.device.env,
                                   self.device.uri, stdout=subprocess.PIPE, stderr=stderr)
            watchdog = None

            def stop() -> None:
                self.timed_out = True
                _kill_group(process)

            try:
                for line in process.stdout:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == JOB_LINE and parts[1].split("/")[0].isdigit():
                        if watchdog is not None:
                            watchdog.cancel()
                        watchdog = threading.Timer(self.device.timeout, stop)  # per job: a hung runtime
                        watchdog.start()
                        self.current = self.indices[int(parts[1].split("/")[0]) - 1]
                        if self.started is not None:
                            self.started(self.current)
                self.returncode = process.wait()
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                _kill_group(process)
            stderr.seek(0)
            self.stderr = stderr.read()


def _start_group(command: list[str], env: dict[str, str] | None, uri: str, **pipes: Any) -> subprocess.Popen:
    """The runner in its own process group, so that stopping it also stops what its runtime forked."""
    try:
        return subprocess.Popen(command, text=True, errors="replace", env=env, start_new_session=True, **pipes)
    except OSError as exc:
        raise EdgembError(f"{uri}: cannot start the runner: {exc}") from None


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the runner's whole process group (a forked child stuck on a lock ignores SIGTERM), then reap."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait()


def _answer(out: Path, uri: str, emulated: bool, stderr: str) -> Measurement | EdgembError:
    """One job's result.json (and outputs) as a Measurement, or its error."""
    summary = json.loads((out / "result.json").read_text())
    try:
        summary = _read_runner_output(out, RUNTIME_EXIT if "error" in summary else 0, stderr, uri)
        return Measurement(read_outputs(out, summary), summary, uri, emulated)
    except EdgembError as exc:
        return exc


@dataclass
class SshDevice:
    """A board reached with OpenSSH: copy artifact + runner + inputs into a fresh remote folder, run, fetch.

    The remote folder is removed on every path, so a failed or interrupted run leaves nothing half copied.
    """

    uri: str
    user: str | None
    host: str
    port: int = 22
    identity: str | None = None
    python: str = "python3"
    connect_timeout: int = 10
    retries: int = 2
    emulated: bool = False
    known_hosts: Path = field(default_factory=lambda: cache_dir("ssh") / "known_hosts")

    def _options(self) -> list[str]:
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                   "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={self.known_hosts}",
                   "-o", "LogLevel=ERROR"]
        if self.identity:
            options += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return options

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _ssh(self, remote_command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """One remote command; connection failures (exit 255) are retried, then explained."""
        for attempt in range(self.retries + 1):
            result = subprocess.run(["ssh", *self._options(), "-p", str(self.port), self.destination,
                                     remote_command], capture_output=True, text=True, timeout=timeout)
            if result.returncode != SSH_UNREACHABLE:
                return result
            if attempt < self.retries:
                time.sleep(1 + attempt)
        raise EdgembError(f"{self.uri}: cannot reach {self.destination} port {self.port} over SSH after "
                          f"{self.retries + 1} attempts: {result.stderr.strip()[-300:]}")

    def _scp(self, sources: list[str], destination: str) -> None:
        result = subprocess.run(["scp", "-q", *self._options(), "-P", str(self.port), *sources, destination],
                                capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise EdgembError(f"{self.uri}: copy failed: {result.stderr.strip()[-300:]}")

    def measure(self, artifact: Path, inputs: np.ndarray, runs: int, warmup: int, threads: int,
                output_names: Sequence[str] | None = None) -> Measurement:
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise EdgembError("ssh:// devices need the OpenSSH client: install Debian's openssh-client")
        files = artifact_files(artifact)
        made = self._ssh("mktemp -d /tmp/edgemb.XXXXXXXX")
        if made.returncode != 0:
            raise EdgembError(f"{self.uri}: cannot create a work folder: {made.stderr.strip()[-300:]}")
        remote_dir = made.stdout.strip()
        try:
            with tempfile.TemporaryDirectory(prefix="edgemb-ssh-") as tmp:
                local = Path(tmp)
                np.save(local / "inputs.npy", inputs.astype(np.float32))
                self._scp([str(RUNNER), str(local / "inputs.npy"), *map(str, files)],
                          f"{self.destination}:{remote_dir}/")
                q = shlex.quote
                options = " ".join(map(q, runner_options(runs, warmup, threads, output_names)))
                run = self._ssh(f"cd {q(remote_dir)} && {q(self.python)} runner.py {q(files[0].name)} inputs.npy out "
                                f"{options}", timeout=3600)
                if run.returncode not in (0, RUNTIME_EXIT):
                    missing = "No such file" in run.stderr or run.returncode == 127
                    hint = f" (is {self.python} installed on the board? set ?python=PATH)" if missing else ""
                    raise EdgembError(f"{self.uri}: the runner failed (exit {run.returncode}){hint}: "
                                      f"{run.stderr.strip()[-400:]}")
                (local / "out").mkdir()
                self._scp([f"{self.destination}:{remote_dir}/out/result.json"], str(local / "out"))
                if run.returncode == 0:
                    self._scp([f"{self.destination}:{remote_dir}/out/outputs.npz"], str(local / "out"))
                summary = _read_runner_output(local / "out", run.returncode, run.stderr, self.uri)
                outputs = read_outputs(local / "out", summary)
        finally:
            self._ssh(f"rm -rf {shlex.quote(remote_dir)}", timeout=60)
        return Measurement(outputs, summary, self.uri, self.emulated)


@dataclass
class RpcDevice:
    """A board behind a TVM RPC tracker, requested by key; runs TVM libraries through the remote Relax VM."""

    uri: str
    tracker_host: str
    tracker_port: int
    key: str
    wait_seconds: float = 120
    emulated: bool = False
    log: Any = field(default=lambda message: print(message, file=sys.stderr))

    def session(self):
        """Connect to the tracker, wait (bounded) for a free board with our key, and open a session."""
        from tvm import rpc

        _probe_port(self.uri, self.tracker_host, self.tracker_port, "TVM RPC tracker")
        try:
            tracker = rpc.connect_tracker(self.tracker_host, self.tracker_port)
        except Exception as exc:
            raise EdgembError(f"{self.uri}: no TVM RPC tracker answers at {self.tracker_host}:{self.tracker_port} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") \
                from None
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            free = _free_boards(tracker.summary(), self.key)
            if free:
                break
            if time.monotonic() > deadline:
                raise EdgembError(f"{self.uri}: no free board with key {self.key!r} after {self.wait_seconds:.0f} s "
                                  f"(tracker queue: {_queue_text(tracker.summary())})")
            if not announced:
                self.log(f"waiting up to {self.wait_seconds:.0f} s for a free {self.key!r} board on "
                         f"{self.tracker_host}:{self.tracker_port}...")
                announced = True
            time.sleep(1)
        return tracker.request(self.key, priority=1, session_timeout=int(self.wait_seconds) + 600, max_retry=3)

    def measure(self, artifact: Path, inputs: np.ndarray, runs: int, warmup: int, threads: int,
                output_names: Sequence[str] | None = None) -> Measurement:
        """Outputs named as the device-side runner names a TVM library's (its tuple is in ONNX output order)."""
        if artifact.suffix != ".so":
            raise EdgembError(f"{self.uri}: TVM RPC runs TVM libraries (.so); use ssh:// for {artifact.suffix} "
                              f"artifacts")
        import tvm
        from tvm import relax

        remote = self.session()
        remote.upload(str(artifact))
        try:
            library = remote.load_module(artifact.name)
        except Exception as exc:
            raise EdgembError(f"{self.uri}: the board cannot load {artifact.name} (built for another "
                              f"architecture?): {str(exc).splitlines()[0][:300]}") from None
        from edgemb.device.runner import RuntimeProblem, name_outputs, percentile_ms

        dev = remote.cpu()
        vm = relax.VirtualMachine(library, dev)
        arity_of, output_at = vm.module["get_output_arity"], vm.module["get_output"]

        def infer(sample: np.ndarray) -> list[np.ndarray]:
            # set_input/invoke_stateful, then each output by index: over RPC, vm["main"](...) returns a tuple (a
            # detector's heads) as an opaque remote object. Not vm.get_outputs: its self-referencing helper keeps
            # the VM, hence the RPC session and the board, busy until the garbage collector runs.
            vm.set_input("main", tvm.runtime.tensor(np.ascontiguousarray(sample[None]), dev))
            vm.invoke_stateful("main")
            arity = arity_of("main")
            return [output_at("main").numpy()] if arity == -1 else [output_at("main", k).numpy() for k in range(arity)]

        runs_out = [infer(s) for s in inputs.astype(np.float32)]
        try:
            named = name_outputs(None, len(runs_out[0]) if runs_out else len(output_names or ()),
                                 list(output_names) if output_names is not None else None, artifact.name)
        except RuntimeProblem as exc:
            raise EdgembError(f"{self.uri}: {exc}") from None
        outputs = {name: np.concatenate([run[k] for run in runs_out]) for name, k in named}
        sample = tvm.runtime.tensor(np.ascontiguousarray(inputs[:1].astype(np.float32)), dev)
        timer = vm.time_evaluator("main", dev, number=1, repeat=runs, min_repeat_ms=0)
        for _ in range(warmup):
            vm["main"](sample)
        seconds = list(timer(sample).results)
        summary = {"artifact": artifact.name, "runtime": f"tvm rpc ({self.key})", "inputs": len(inputs),
                   "output_names": list(outputs), "output_shapes": [list(v.shape) for v in outputs.values()],
                   "warmup": warmup, "runs": runs, "threads": threads,
                   "latency_ms": [round(s * 1e3, 4) for s in seconds], "p50_ms": percentile_ms(seconds, 0.5),
                   "p90_ms": percentile_ms(seconds, 0.9), "p99_ms": percentile_ms(seconds, 0.99)}
        return Measurement(outputs, summary, self.uri, self.emulated)


def _probe_port(uri: str, host: str, port: int, what: str, attempts: int = 3, timeout: float = 3) -> None:
    """Fail in seconds, not TVM's silent minute of retries, when nothing listens at host:port."""
    import socket

    for attempt in range(attempts):
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            error = exc
            if attempt + 1 < attempts:
                time.sleep(1)
    raise EdgembError(f"{uri}: no {what} answers at {host}:{port} after {attempts} attempts ({error})")


def _free_boards(summary: dict[str, Any], key: str) -> int:
    """Free servers with this key according to the tracker's summary."""
    return int(summary.get("queue_info", {}).get(key, {}).get("free", 0))


def _queue_text(summary: dict[str, Any]) -> str:
    queue = summary.get("queue_info", {})
    return ", ".join(f"{k}: {v.get('free', 0)} free/{v.get('pending', 0)} pending" for k, v in queue.items()) \
        or "no boards registered"


def open_device(uri: str | None, target_name: str | None = None, log=print) -> Device:
    """The device a URI names; None means this host for x86 and the emulated board for ARM targets."""
    if uri is None or uri == "local":
        if uri is None and target_name is not None:
            from edgemb.targets import get_target

            target = get_target(target_name)
            if target.arch == "aarch64":
                return open_device(f"emulated:{target.name}", target_name, log)
            if target.kind != "cpu" or target.name != "x86":
                raise EdgembError(f"target {target.name} has no default device: pass --device")
        return SubprocessDevice("local", [sys.executable])
    if uri.startswith("emulated:"):
        from edgemb.device.emulate import prepare_board

        board = prepare_board(uri.split(":", 1)[1], log=log)
        return SubprocessDevice(uri, board.python(), board.environment(), emulated=True, timeout=EMULATED_TIMEOUT)
    parsed = urlparse(uri)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "ssh":
        if not parsed.hostname:
            raise EdgembError(f"bad device URI {uri!r}: expected ssh://user@host[:port]")
        return SshDevice(uri, parsed.username, parsed.hostname, _port(parsed, uri) or 22, query.get("identity"),
                         query.get("python", "python3"), int(_seconds(query, "connect_timeout", 10, uri)))
    if parsed.scheme == "rpc":
        key = parsed.path.strip("/")
        if not parsed.hostname or not _port(parsed, uri) or not key:
            raise EdgembError(f"bad device URI {uri!r}: expected rpc://TRACKER_HOST:PORT/KEY")
        return RpcDevice(uri, parsed.hostname, _port(parsed, uri), key, _seconds(query, "timeout", 120, uri))
    raise EdgembError(f"unknown device {uri!r}: use local, emulated:BOARD, ssh://user@host[:port] or "
                      f"rpc://TRACKER_HOST:PORT/KEY")


def _port(parsed: Any, uri: str) -> int | None:
    """The URI's port, or an EdgembError instead of urllib's ValueError for `:abc` or `:99999`."""
    try:
        return parsed.port
    except ValueError:
        text = parsed.netloc.rpartition(":")[2]
        raise EdgembError(f"bad device URI {uri!r}: port {text!r} is not a number from 1 to 65535") from None


def _seconds(query: dict[str, str], key: str, default: float, uri: str) -> float:
    """A positive number of seconds from the URI's query (`?timeout=30`)."""
    text = query.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < 1e6):
        raise EdgembError(f"bad device URI {uri!r}: {key}={text!r} must be a positive number of seconds")
    return value
