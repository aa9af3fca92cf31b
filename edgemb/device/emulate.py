"""An emulated ARM board: an arm64 Debian root filesystem run through qemu-user, prepared once and cached.

CI has no Raspberry Pi, but qemu-user runs the board's real aarch64 Python, numpy and runtimes on the
artifacts cross-compiled here, so their outputs are a real functional check (their timings mean nothing).
binfmt_misc is often absent in containers, so nothing is chrooted: every program starts as
`qemu-aarch64-static -L ROOTFS -cpu CORE ROOTFS/usr/bin/python3.11`, and the device-side wheels are
installed by this host's pip for the aarch64 platform (much faster than pip under emulation).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgemb.cache import cache_dir
from edgemb.errors import EdgembError
from edgemb.locking import file_lock
from edgemb.targets import Target, get_target

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "libstdc++6", "libgomp1")
# Device-side runtimes, pinned to the versions the host builds with (aarch64 wheels from PyPI), except
# ai-edge-litert: the 2.3.0 aarch64 wheel crashes creating any Interpreter under qemu-user 7.2 (cortex-a72 and
# max CPU models alike); 2.1.6 runs the same .tflite files. onnxruntime: the 1.28-1.31 aarch64 wheels segfault
# on import under qemu-user 7.2 (cortex-a72 and max); 1.27.0 is the newest that runs.
DEVICE_WHEELS = ("numpy==2.4.6", "ai-edge-litert==2.1.6", "openvino==2026.4.1", "apache-tvm==0.27.0.post1",
                 "apache-tvm-ffi==0.1.14.post1", "typing_extensions==4.16.0", "ml_dtypes==0.6.0",
                 "psutil==7.2.2", "cloudpickle==3.1.2", "tornado==6.6.1", "onnxruntime==1.27.0")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in (17, 24, 27, 28, 31, 34, 35, 36)))
# qemu 7.2 models these cores; boards whose core it lacks run on "max" (a superset of ARMv8 features).
QEMU_CPUS = {"cortex-a53": "cortex-a53", "cortex-a72": "cortex-a72", "cortex-a76": "cortex-a76"}
TOOLS = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static", "dpkg": "dpkg"}
RECIPE = {"suite": SUITE, "arch": "arm64", "packages": BASE_PACKAGES, "wheels": DEVICE_WHEELS, "layout": 1}


@dataclass(frozen=True)
class EmulatedBoard:
    """A prepared root filesystem and how to start the board's Python in it."""

    target: Target
    rootfs: Path

    @property
    def site_packages(self) -> Path:
        return self.rootfs / "opt" / "edgemb" / "site-packages"

    @property
    def qemu_cpu(self) -> str:
        return QEMU_CPUS.get(self.target.core, "max")

    def python(self) -> list[str]:
        """Command prefix that runs the board's python3.11 under qemu-user."""
        return [qemu_binary(), "-L", str(self.rootfs), "-cpu", self.qemu_cpu,
                str(self.rootfs / "usr" / "bin" / "python3.11")]

    def python_launcher(self) -> Path:
        """A host shell script that starts the board's Python under qemu.

        Programs on the board that start another Python (TVM's RPC server runs each session in a fresh
        worker through sys.executable) cannot exec an aarch64 binary without binfmt_misc; pointing
        sys.executable at this launcher makes them work.
        """
        launcher = self.rootfs.parent / f"python-{self.target.name}"
        text = "#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in self.python()) + ' "$@"\n'
        if not launcher.exists() or launcher.read_text() != text:
            tmp = launcher.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, launcher)
        return launcher

    def rpc_server_command(self, tracker: str, key: str, port: int) -> list[str]:
        """The stock tvm.exec.rpc_server on the emulated board, registered with a tracker under `key`."""
        host, _, tracker_port = tracker.rpartition(":")
        if not host or not tracker_port.isdigit():
            raise EdgembError(f"--tracker must be HOST:PORT, got {tracker!r}")
        bootstrap = (f"import sys, runpy; sys.executable = {str(self.python_launcher())!r}; "
                     f"sys.argv = ['rpc_server', '--host', '127.0.0.1', '--port', '{port}', '--port-end', "
                     f"'{port + 10}', '--tracker', {tracker!r}, '--key', {key!r}]; "
                     f"runpy.run_module('tvm.exec.rpc_server', run_name='__main__')")
        return [*self.python(), "-c", bootstrap]

    def environment(self) -> dict[str, str]:
        """The board's site-packages only; none of the host's Python settings leak in; the board's own HOME.

        That HOME declines OpenVINO's telemetry: on compile_model it forks a process to post to the internet,
        and a fork of a multithreaded program under qemu-user can deadlock (seen: an OpenVINO IR check of a
        deploy hung, parent in wait4, child on a futex, until the runner's timeout)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(PYTHONPATH=str(self.site_packages), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
                   HOME=str(self.home()))
        return env

    def home(self) -> Path:
        """The board user's home folder, with OpenVINO's telemetry declined (its consent file holds 0)."""
        home = self.rootfs / "opt" / "edgemb" / "home"
        consent = home / "intel" / "openvino_telemetry"
        if not consent.is_file() or consent.read_text().strip() != "0":
            consent.parent.mkdir(parents=True, exist_ok=True)
            tmp = consent.with_suffix(".tmp")
            tmp.write_text("0\n")
            os.replace(tmp, consent)
        return home


def recipe_key() -> str:
    """Changes whenever the rootfs recipe does, so an old cached board is rebuilt, never half-reused."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def qemu_binary() -> str:
    """qemu-aarch64-static, or an error naming the Debian package."""
    path = shutil.which("qemu-aarch64-static")
    if path is None:
        raise EdgembError("emulating an ARM board needs qemu-aarch64-static: install Debian's qemu-user-static "
                          "(`sudo apt-get install qemu-user-static`, part of `make setup`)")
    return path


def emulatable(target: Target) -> None:
    """Only aarch64 Linux boards can be emulated here."""
    if target.kind != "cpu" or target.arch != "aarch64":
        raise EdgembError(f"target {target.name} ({target.arch}, {target.kind}) cannot be emulated: edgemb "
                          f"emulates aarch64 Linux boards (rpi3, rpi4, rpi5, jetson-orin)")


def board_dir() -> Path:
    """All aarch64 targets share one root filesystem; only the qemu CPU model differs."""
    return cache_dir("devices") / f"debian-{SUITE}-arm64-{recipe_key()}"


def prepare_board(target_name: str, log=print) -> EmulatedBoard:
    """The cached emulated board for a target, built first if needed (about 2-4 minutes, network needed once)."""
    target = get_target(target_name)
    emulatable(target)
    final = board_dir()
    ready = final / "opt" / "edgemb" / "ready.json"
    if not ready.exists():
        # One builder at a time; a second run waits, then finds the board ready.
        with file_lock(final.parent / f".{final.name}.lock", f"the emulated board at {final}", log=log):
            if not ready.exists():
                _build_rootfs(final, target, log)
    return EmulatedBoard(target, final)


def _build_rootfs(final: Path, target: Target, log) -> None:
    """debootstrap (first stage), unpack every .deb, install aarch64 wheels, smoke-test; then move into place."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise EdgembError(f"preparing an emulated board needs {tool}: install Debian's {package} "
                              f"(`sudo apt-get install {package}`, part of `make setup`)")
    if os.geteuid() != 0:
        raise EdgembError("debootstrap needs root to create the board's root filesystem: run "
                          "`sudo edgemb device emulate rpi4` once (the result is cached for every user run)")
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    rootfs = work / "rootfs"
    started = time.perf_counter()
    try:
        log(f"[1/4] debootstrap {SUITE} arm64 (minbase + {', '.join(BASE_PACKAGES)})")
        mirror = os.environ.get("EDGEMB_DEBIAN_MIRROR", DEFAULT_MIRROR)
        _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
              f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), mirror], "debootstrap")
        debs = sorted((rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"))
        log(f"[2/4] unpacking {len(debs)} packages (no chroot: binfmt_misc is not needed)")
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(rootfs)], f"dpkg -x {deb.name}")
            deb.unlink()
        log(f"[3/4] installing aarch64 wheels: {', '.join(w.split('==')[0] for w in DEVICE_WHEELS)}")
        site = rootfs / "opt" / "edgemb" / "site-packages"
        platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
              "--target", str(site), *platforms, "--python-version", "3.11", "--implementation", "cp",
              "--only-binary=:all:", *DEVICE_WHEELS], "pip install (aarch64 wheels)")
        log("[4/4] smoke test: importing the runtimes on the emulated board")
        board = EmulatedBoard(target, rootfs)
        probe = ("import json, platform, numpy, openvino, tvm, onnxruntime, ai_edge_litert.interpreter;"
                 "print(json.dumps({'arch': platform.machine(), 'python': platform.python_version(),"
                 "'numpy': numpy.__version__, 'openvino': openvino.__version__, 'tvm': tvm.__version__,"
                 "'onnxruntime': onnxruntime.__version__}))")
        result = subprocess.run([*board.python(), "-c", probe], capture_output=True, text=True,
                                env=board.environment(), timeout=600)
        if result.returncode != 0:
            raise EdgembError(f"the emulated board cannot import its runtimes: {result.stderr.strip()[-500:]}")
        ready = {"recipe": RECIPE, "versions": json.loads(result.stdout.strip().splitlines()[-1]),
                 "seconds": round(time.perf_counter() - started, 1)}
        (site.parent / "ready.json").write_text(json.dumps(ready, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(rootfs, final)
        for stale in final.parent.glob(f"debian-{SUITE}-arm64-*"):  # boards from older recipes
            if stale != final and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        log(f"emulated board ready in {ready['seconds']:.0f} s: {final}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(command: list[str], what: str) -> None:
    """Run a preparation step; its output is only shown when it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise EdgembError(f"{what} failed (exit {result.returncode}): {tail}")
