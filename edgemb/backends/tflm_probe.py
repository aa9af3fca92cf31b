"""Child-process probe: exit 0 when TFLite Micro runs MODEL in an arena of ARENA bytes (see minimal_arena)."""

from __future__ import annotations

import sys

import numpy as np


def main(path: str, arena: int) -> int:
    """Allocate and invoke once on zeros; any failure (or a crash of the child) means it does not fit.

    TFLite Micro prints why it failed on stdout; the parent reads it from there.
    """
    from tflite_micro.python.tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_file(path, arena_size=arena)
        detail = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
        interpreter.invoke()
    except (RuntimeError, ValueError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
