"""Advisory file locks so two edgemb processes never build into the same folder or cache entry at once.

`flock` locks belong to the open file: the kernel drops them when the process exits, even on SIGKILL, so a
crashed run never leaves a lock that has to be cleaned up by hand. The lock file records who holds it, only
to make the message useful.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgemb.errors import EdgembError

LOCK_NAME = ".edgemb.lock"


def _holder(path: Path) -> str:
    """Who holds a lock, as written by its holder ("pid 123 on host: what"), for error and wait messages."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "another edgemb process"
    return text or "another edgemb process"


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait: bool = True, log: Callable[[str], None] | None = None,
              timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block: wait for it (saying so once) or fail at once.

    `wait=False` is for things a second run must not share (a deploy folder): it raises an EdgembError that
    names the holder. `wait=True` is for shared caches (tuning databases, the emulated board, downloads): the
    second run waits, then finds the first one's result in the cache.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the block, not a with-statement
    except OSError as exc:
        raise EdgembError(f"cannot create the lock file {path} ({exc.strerror}): is {path.parent} writable?") \
            from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise EdgembError(f"{what} is in use by {holder}: wait for it to finish, or choose another "
                                  f"--out") from None
            (log or _to_stderr)(f"waiting for {what}: in use by {holder}")
            _wait_for(handle, what, holder, timeout)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock


def _to_stderr(message: str) -> None:
    print(f"edgemb: {message}", file=sys.stderr, flush=True)


def _wait_for(handle, what: str, holder: str, timeout: float | None) -> None:
    """Block until the lock is free (bounded by `timeout` seconds when given)."""
    if timeout is None:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise EdgembError(f"{what} is still in use by {holder} after {timeout:.0f} s: try again when "
                                  f"it has finished") from None
            time.sleep(0.2)
