"""Silence native libraries that print to the process's stdout/stderr (converters, absl logging, TFLite INFO)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import tempfile
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def native_output_captured() -> Iterator[list[str]]:
    """Redirect file descriptors 1 and 2 to a temporary file; on error the captured text is kept for the message.

    Yields a list that holds the captured text after the block (for error messages).
    """
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


# Lines other libraries write to stderr that say nothing to an edgemb user (`--verbose` shows them):
# absl/glog start-up and info lines from TensorFlow-based converters, torchao's missing CUDA kernels, torch's
# pytree deprecation notes and TFLite's XNNPACK "INFO:" lines.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|Failed to load \S*torchao\S*"
    r"|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite|Replacing \d+ node|Using XNNPACK))"
)
IDLE_FLUSH_SECONDS = 0.2


def _pump(read_fd: int, out_fd: int, noise: re.Pattern) -> None:
    """Copy the pipe to the real stderr line by line (\\n or \\r ends a line), dropping noise lines."""
    pending = b""

    def emit(chunk: bytes) -> None:
        if chunk and not noise.match(chunk.decode(errors="replace").lstrip("\r")):
            with contextlib.suppress(OSError):
                os.write(out_fd, chunk)

    while True:
        ready, _, _ = select.select([read_fd], [], [], IDLE_FLUSH_SECONDS)
        if not ready:  # idle: show a partial line (a progress bar being redrawn) unless it may become noise
            if pending and not noise.match(pending.decode(errors="replace").lstrip("\r")):
                emit(pending)
                pending = b""
            continue
        block = os.read(read_fd, 1 << 16)
        if not block:
            emit(pending)
            break
        pending += block
        cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
        if cut >= 0:
            lines, pending = pending[: cut + 1], pending[cut + 1:]
            for line in re.findall(rb"[^\r\n]*(?:\r\n|\n|\r)", lines):
                emit(line)
    os.close(read_fd)
    os.close(out_fd)


@contextlib.contextmanager
def stderr_filtered(noise: re.Pattern = NOISE) -> Iterator[None]:
    """Route file descriptor 2 (Python and native writers alike) through a filter that drops library noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, os.dup(saved), noise), daemon=True,
                            name="edgemb-stderr-filter")
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes our write end; the pump sees EOF once no child holds it either
        os.close(saved)
        pump.join(timeout=2)
