"""TFLite Micro for Cortex-M targets: the int8 flatbuffer with inline buffers, its minimal tensor arena,
flash size, the op list for the firmware's op resolver, and a C array ready to compile into firmware.

ai-edge-quantizer may store weight buffers after the flatbuffer (offset buffers), which TFLite Micro reads
as garbage, so the model is re-serialised with every buffer inline. TFLite Micro has no "required arena"
query: a too-small arena fails at allocation, so the minimum is found by bisection.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.backends.base import Artifact, BuildInputs, importable, mark_fit
from edgemb.backends.tflite_backend import (
    TfliteRunner,
    dequantize_output,
    int8_quantization,
    int8_tflite,
    quantize_input,
)
from edgemb.errors import EdgembError
from edgemb.quiet import native_output_captured
from edgemb.targets import Target

ARENA_STEP = 1024
ARENA_LIMIT = 64 * 1024 * 1024
C_ARRAY_NAME = "g_model_data"


def inline_buffers(source: Path, dest: Path) -> None:
    """Re-serialise a .tflite so every weight buffer lives inside the flatbuffer."""
    from ai_edge_litert.tools import flatbuffer_utils

    flatbuffer_utils.write_model(flatbuffer_utils.read_model(str(source)), str(dest))


def op_list(path: Path) -> list[str]:
    """Builtin op names the model uses: what the firmware's MicroMutableOpResolver must register."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
             for subgraph in model.subgraphs for op in subgraph.operators}
    return sorted(n for n in names if n)


def _interpreter(path: Path, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    with native_output_captured():
        return runtime.Interpreter.from_file(str(path), arena_size=arena)


def arena_fits(path: Path, arena: int) -> tuple[bool, str]:
    """Whether TFLite Micro can allocate and run the model in an arena of this many bytes, and its complaint.

    Probed in a child process: some too-small arenas crash the host interpreter instead of failing cleanly.
    """
    probe = subprocess.run([sys.executable, "-m", "edgemb.backends.tflm_probe", str(path), str(arena)],
                           capture_output=True, text=True, timeout=300, check=False)
    lines = [line.strip() for line in (probe.stdout + probe.stderr).splitlines()
             if "fail" in line.lower() or "not true" in line.lower()]
    return probe.returncode == 0, "; ".join(lines[:2])


def arena_used(path: Path) -> int | None:
    """Bytes TFLite Micro's recording allocator reports using when the model runs in an ARENA_LIMIT arena (None if
    it does not run or does not say): where the search looks first."""
    probe = subprocess.run([sys.executable, "-m", "edgemb.backends.tflm_probe", str(path), str(ARENA_LIMIT),
                            "--allocations"], capture_output=True, text=True, timeout=300, check=False)
    match = re.search(r"Arena allocation total (\d+) bytes", probe.stdout + probe.stderr)
    return int(match.group(1)) if probe.returncode == 0 and match else None


def minimal_arena(path: Path) -> int:
    """Smallest arena (to ARENA_STEP bytes) that runs the model: the allocator's own count rounded up to a step,
    taken when probes confirm it is the boundary (it runs, one step less does not; alignment may need a step
    more), else doubling, then bisection. Each probe is a child process (about a second): the count takes three
    where the bisection takes a dozen, and both give the same boundary."""
    used = arena_used(path)
    if used is not None:
        start = max(-(-used // ARENA_STEP), 9) * ARENA_STEP  # the bisection below never answers under 9 steps
        for arena in (start, start + ARENA_STEP):
            if arena_fits(path, arena)[0]:
                if not arena_fits(path, arena - ARENA_STEP)[0]:
                    return arena
                break
    high = 16 * ARENA_STEP
    while not (probe := arena_fits(path, high))[0]:
        high *= 2
        if high > ARENA_LIMIT:
            raise EdgembError(f"TFLite Micro cannot run {path.name} even with a {ARENA_LIMIT >> 20} MiB arena: "
                              f"{probe[1] or 'allocation failed'}")
    low = high // 2
    while high - low > ARENA_STEP:
        middle = (low + high) // 2 // ARENA_STEP * ARENA_STEP
        if arena_fits(path, middle)[0]:
            high = middle
        else:
            low = middle
    return high


def write_c_array(model: Path, folder: Path, ops: list[str], arena: int) -> tuple[Path, Path]:
    """model_data.h/.cc: the flatbuffer as a 16-byte-aligned C array plus the arena size and op list."""
    data = model.read_bytes()
    header = folder / "model_data.h"
    source = folder / "model_data.cc"
    header.write_text(
        "// Generated by edgemb: the int8 model for TFLite Micro.\n#pragma once\n\n"
        f"// Register these ops in your MicroMutableOpResolver<{len(ops)}>: {', '.join(ops)}\n"
        f"constexpr unsigned int kTensorArenaSize = {arena};  // bytes, measured by edgemb\n"
        f"extern const unsigned char {C_ARRAY_NAME}[];\nextern const unsigned int {C_ARRAY_NAME}_len;\n"
    )
    rows = [", ".join(f"0x{b:02x}" for b in data[i: i + 12]) for i in range(0, len(data), 12)]
    source.write_text(
        '#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {C_ARRAY_NAME}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
        f"const unsigned int {C_ARRAY_NAME}_len = {len(data)};\n"
    )
    return header, source


class TflmRunner:
    """TFLite Micro's host interpreter (reference kernels, as on a Cortex-M without CMSIS-NN)."""

    def __init__(self, path: Path, arena: int) -> None:
        self.path = path
        self.interpreter = _interpreter(path, arena)
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)
        self.input["quantization"] = _scale_zero(self.input)
        self.output["quantization"] = _scale_zero(self.output)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float logits for NCHW float samples (quantized to the model's int8 input)."""
        outputs = []
        for sample in batch:
            self.interpreter.set_input(quantize_input(sample.transpose(1, 2, 0)[None], self.input), 0)
            self.interpreter.invoke()
            outputs.append(dequantize_output(self.interpreter.get_output(0), self.output))
        return np.concatenate(outputs)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in PyTorch's tuple order (the flatbuffer's signature says which subgraph output is which)."""
        from ai_edge_litert.interpreter import Interpreter

        lite = Interpreter(model_path=str(self.path))
        positions = [d["index"] for d in lite.get_output_details()]
        named = next(iter(lite._get_full_signature_list().values()), {}).get("outputs", {})
        order = ([positions.index(named[k]) for k in sorted(named, key=lambda k: int(k.rsplit("_", 1)[-1]))]
                 if named and all(k.rsplit("_", 1)[-1].isdigit() for k in named) else list(range(len(positions))))
        details = []
        for k in order:
            detail = self.interpreter.get_output_details(k)
            detail["quantization"] = _scale_zero(detail)
            details.append(detail)
        columns: list[list[np.ndarray]] = [[] for _ in order]
        for sample in batch:
            self.interpreter.set_input(quantize_input(sample.transpose(1, 2, 0)[None], self.input), 0)
            self.interpreter.invoke()
            for column, k, detail in zip(columns, order, details, strict=True):
                column.append(dequantize_output(self.interpreter.get_output(k), detail))
        return [np.concatenate(column) for column in columns]

    def reference_agreement(self, batch: np.ndarray, outputs: list[np.ndarray], task: Any) -> dict:
        """This runner's `outputs` on `batch` against LiteRT's reference kernels on the same flatbuffer, compared
        the task's way (every output, decoded: top-1, boxes or masks; `agreement` is the task's own figure)."""
        reference = TfliteRunner(self.path, reference_kernels=True).run_all(batch)
        return {"against": "ai-edge-litert BUILTIN_REF kernels", **task.parity(reference, outputs, None)}


def _scale_zero(detail: dict) -> tuple[float, int]:
    params = detail["quantization_parameters"]
    return float(params["scales"][0]), int(params["zero_points"][0])


class TflmBackend:
    """TFLite Micro behind the common interface."""

    name = "tflm"

    def available(self) -> tuple[bool, str]:
        """tflite-micro's host interpreter and the TFLite tools that make the int8 model."""
        return importable(("tflite_micro.python.tflite_micro.runtime", "ai_edge_quantizer", "litert_torch"),
                          "TFLite Micro tools")

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """Inline-buffer int8 flatbuffer, measured arena, op list, C array and the fit against the board."""
        if precision != "int8":
            raise EdgembError(f"TFLite Micro targets run int8 only, not {precision!r}")
        folder = out_dir / "tflm"
        folder.mkdir(exist_ok=True)
        model = folder / "model.int8.tflite"
        inline_buffers(int8_tflite(inputs), model)
        arena = minimal_arena(model)
        ops = op_list(model)
        write_c_array(model, folder, ops, arena)
        flash, sram = target.memory.get("flash_bytes"), target.memory.get("sram_bytes")
        size = model.stat().st_size
        memory = {"flash_bytes": size, "arena_bytes": arena, "target_flash_bytes": flash, "target_sram_bytes": sram}
        artifact = Artifact(self.name, precision, model, extra={
            "memory": memory, "ops": ops, "c_source": "tflm/model_data.cc",
            "quantizer": int8_quantization(inputs)["quantizer"]})
        problems = []
        if flash is not None and size > flash:
            problems.append(f"model {size:,} B > flash {flash:,} B")
        if sram is not None and arena > sram:
            problems.append(f"tensor arena {arena:,} B > SRAM {sram:,} B")
        return mark_fit(artifact, problems, target.board)

    def load(self, artifact: Artifact, target: Target) -> TflmRunner:
        """The host interpreter with the measured arena."""
        return TflmRunner(artifact.path, artifact.extra["memory"]["arena_bytes"])

