"""Real servers for device tests: an OpenSSH daemon and a TVM RPC tracker with servers, all on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the server and every worker it started (TVM's tracker and servers fork helper processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def sshd(folder: Path) -> Iterator[tuple[int, Path]]:
    """OpenSSH's sshd on 127.0.0.1 at a high port, with a temporary host key and a temporary user key.

    Yields (port, private key of the current user)."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    assert os.path.exists(binary), "sshd is missing: `make setup` installs Debian's openssh-server"
    folder.mkdir(parents=True, exist_ok=True)
    host_key, user_key = folder / "host_ed25519", folder / "user_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    shutil.copyfile(user_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    port = free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {authorized}",
        f"PidFile {folder / 'sshd.pid'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "Subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel ERROR", "",
    ]))
    process = subprocess.Popen([binary, "-D", "-E", str(folder / "sshd.log"), "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield port, user_key
    finally:
        stop(process)


@contextlib.contextmanager
def rpc_tracker() -> Iterator[int]:
    """TVM's stock tracker (`python -m tvm.exec.rpc_tracker`) on loopback."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(port), "--port-end", str(port + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


@contextlib.contextmanager
def rpc_server(command: list[str], tracker_port: int, key: str, env: dict | None = None,
               seconds: float = 120) -> Iterator[subprocess.Popen]:
    """An RPC server process that registers `key` with the tracker; waits until the tracker lists it."""
    from tvm import rpc

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rpc server exited with {process.returncode}")
            queue = rpc.connect_tracker("127.0.0.1", tracker_port).summary().get("queue_info", {})
            if queue.get(key, {}).get("free", 0):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {key!r} server registered after {seconds} s")
            time.sleep(0.5)
        yield process
    finally:
        stop(process)


def x86_rpc_server_command(tracker_port: int, key: str) -> list[str]:
    port = free_port()
    return [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port),
            "--port-end", str(port + 10), "--tracker", f"127.0.0.1:{tracker_port}", "--key", key]
