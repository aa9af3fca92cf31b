"""Arm Ethos-U microNPUs through Vela: the same int8 TFLite the tflite/tflm backends use, compiled for the board's
NPU (ethos-u-vela), with Vela's performance-model estimate, the memory it needs against the board, the NPU/CPU
operator split, a TFLite Micro arena estimate and a C array for the firmware.

Nothing here runs on an NPU. Vela's time and cycles come from its performance model of the named system
configuration and are labelled "estimated (Vela performance model)". Parity is measured on the TFLite int8
reference kernels running the flatbuffer Vela compiled from; the NPU's own outputs need the board.
"""

from __future__ import annotations

import configparser
import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgemb.backends.base import Artifact, BuildInputs, importable, mark_fit
from edgemb.backends.tflite_backend import TfliteRunner, int8_quantization, int8_tflite
from edgemb.backends.tflm_backend import C_ARRAY_NAME, inline_buffers, write_c_array
from edgemb.errors import EdgembError
from edgemb.targets import Target

ESTIMATE_LABEL = "estimated (Vela performance model)"
# Vela plans the tensors of its output model (OfflineMemoryAllocation); TFLite Micro adds its own structures
# (tensor and node records, the Ethos-U op's persistent data). Arm's ML evaluation kit (docs/sections/
# memory_considerations.md) says to top Vela's figure by at least 2 KiB for them.
TFLM_OVERHEAD_BYTES = 2048
ETHOSU_CUSTOM_OP = "ethos-u"
PARITY_NOTE = ("parity measured on the TFLite int8 reference kernels (ai-edge-litert BUILTIN_REF) running "
               "vela/model.int8.tflite, the model Vela compiled; without the board the NPU's own outputs are not "
               "checked")
# Vela's storage area names (summary CSV) -> the board's [memory] key that holds that area.
AREA_MEMORY = {"SRAM": "sram_bytes", "DRAM": "dram_bytes", "Off-chip Flash": "flash_bytes",
               "On-chip Flash": "flash_bytes"}


def arm_vela_ini() -> Path:
    """Arm's vela.ini shipped in the ethos-u-vela wheel: the system configs and memory modes boards name."""
    import ethosu.vela

    path = Path(ethosu.vela.__file__).resolve().parent.parent / "config_files" / "Arm" / "vela.ini"
    if not path.is_file():
        raise EdgembError(f"ethos-u-vela has no {path}: reinstall it with `make setup`")
    return path


def _section(parser: configparser.ConfigParser, name: str) -> dict[str, str]:
    """One section of a Vela ini with `inherit=` resolved (Vela's own rule: the named section's keys first)."""
    if not parser.has_section(name):
        kind, _, short = name.partition(".")
        known = sorted(s.partition(".")[2] for s in parser.sections() if s.startswith(kind + "."))
        raise EdgembError(f"Vela's Arm/vela.ini has no {kind} {short!r}: choose one of {', '.join(known)} in the "
                          "board's [npu] section")
    values = dict(parser.items(name))
    parent = values.pop("inherit", None)
    return {**_section(parser, parent), **values} if parent else values


def write_vela_ini(npu: dict[str, Any], path: Path) -> tuple[str, str]:
    """The board's system config (Arm's, with its own NPU clock) and memory mode as one ini beside the model.

    Returns the section names to pass to `vela --system-config/--memory-mode`. Keeping the ini with the artifact
    records exactly what the estimate was made for.
    """
    arm = configparser.ConfigParser()
    arm.optionxform = str  # type: ignore[assignment,method-assign]  # Vela's keys are case-sensitive
    arm.read(arm_vela_ini())
    system = _section(arm, f"System_Config.{npu['system_config']}")
    memory = _section(arm, f"Memory_Mode.{npu['memory_mode']}")
    system_name, memory_name = npu["system_config"], npu["memory_mode"]
    if "core_clock_hz" in npu:
        system["core_clock"] = f"{float(npu['core_clock_hz']):g}"
        system_name = f"{system_name}_at_{int(npu['core_clock_hz']) // 1_000_000}MHz"
    out = configparser.ConfigParser()
    out.optionxform = str  # type: ignore[assignment,method-assign]  # keep Vela's key spelling
    out[f"System_Config.{system_name}"] = system
    out[f"Memory_Mode.{memory_name}"] = memory
    with path.open("w") as handle:
        handle.write(f"; written by edgemb from ethos-u-vela's Arm/vela.ini ([System_Config.{npu['system_config']}]"
                     f", [Memory_Mode.{npu['memory_mode']}])\n")
        out.write(handle)
    return system_name, memory_name


def run_vela(model: Path, npu: dict[str, Any], folder: Path,
             extra: tuple[str, ...] = ()) -> tuple[Path, dict[str, str], str]:
    """Compile with the board's accelerator, system config and memory mode; the output model, summary row and log.

    `extra` are more Vela options (e.g. `--ignore-ops MEAN` to keep an op on the CPU)."""
    ini = folder / "vela.ini"
    system, memory = write_vela_ini(npu, ini)
    out = folder / "vela-output"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "ethosu.vela", str(model), "--accelerator-config", npu["accelerator"],
               "--config", str(ini), "--system-config", system, "--memory-mode", memory,
               "--output-dir", str(out), "--show-cpu-operations"]
    if npu.get("arena_cache_size"):
        command += ["--arena-cache-size", str(npu["arena_cache_size"])]
    command += list(extra)
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    log = result.stdout + result.stderr
    (folder / "vela.log").write_text(" ".join(command[1:]) + "\n\n" + log)
    compiled = out / f"{model.stem}_vela.tflite"
    summaries = sorted(out.glob(f"{model.stem}_summary_*.csv"))
    if result.returncode != 0 or not compiled.exists() or not summaries:
        last = [line for line in log.splitlines() if line.strip()][-3:]
        raise EdgembError(f"vela failed on {model.name} (exit {result.returncode}): {' | '.join(last)}")
    with summaries[0].open() as handle:
        row = next(csv.DictReader(handle))
    return compiled, row, log


def operator_split(source: Path, compiled: Path, log: str) -> dict[str, Any]:
    """How many of the source model's TFLite operators run on the NPU, and which stay on the CPU (by op name).

    Counted on the flatbuffers: every source op not left in Vela's output model went into an Ethos-U op.
    Vela's own counts (of its internal operations, after splitting fused activations) are kept beside them.
    """
    source_ops = _operators(source)
    compiled_ops = _operators(compiled)
    cpu_ops = [name for name in compiled_ops if name != ETHOSU_CUSTOM_OP]
    vela_counts = {key.lower(): int(m.group(1)) for key in ("CPU", "NPU")
                   if (m := re.search(rf"^{key} operators = (\d+)", log, re.M))}
    npu = len(source_ops) - len(cpu_ops)
    return {"total": len(source_ops), "npu": npu, "cpu": len(cpu_ops), "cpu_fallback_ops": sorted(set(cpu_ops)),
            "npu_fraction": round(npu / max(len(source_ops), 1), 4),
            "ethos_u_ops": compiled_ops.count(ETHOSU_CUSTOM_OP), "vela_internal_ops": vela_counts}


def _operators(path: Path) -> list[str]:
    """Every operator of a flatbuffer by name (custom ops by their custom code)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            names.append(custom or flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
    return names


def planned_arena(compiled: Path) -> tuple[int, int]:
    """Bytes of the tensor arena Vela planned for TFLite Micro, and of the NPU's fast scratch (its SRAM cache).

    The arena is the end of the furthest tensor placed by Vela's OfflineMemoryAllocation metadata; in a
    Dedicated_Sram mode `scratch_fast` is the cache that the firmware gives the Ethos-U driver in SRAM, apart
    from the arena.
    """
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(compiled))
    entry = next((m for m in model.metadata or [] if m.name in (b"OfflineMemoryAllocation",
                                                                 "OfflineMemoryAllocation")), None)
    if entry is None:
        raise EdgembError(f"{compiled.name} has no OfflineMemoryAllocation metadata: not a Vela output model")
    offsets = np.frombuffer(bytes(model.buffers[entry.buffer].data), dtype=np.int32)[3:]
    end = fast = 0
    for offset, tensor in zip(offsets, model.subgraphs[0].tensors, strict=False):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        if name == "scratch_fast":
            fast = _tensor_bytes(tensor)
        elif offset >= 0:
            end = max(end, int(offset) + _tensor_bytes(tensor))
    return end, fast


def _tensor_bytes(tensor) -> int:
    """Bytes of one flatbuffer tensor (int8/uint8 for everything Vela places; wider types counted too)."""
    import numpy as np

    width = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1, 10: 8, 16: 8}.get(int(tensor.type), 1)
    return int(np.prod(tensor.shape if tensor.shape is not None and len(tensor.shape) else [1])) * width


def _kib(value: str) -> int:
    """Vela's summary gives memory in KiB (float): bytes."""
    return round(float(value) * 1024)


def estimate_record(row: dict[str, str]) -> dict[str, Any]:
    """Vela's time and cycles for one inference, labelled as an estimate, with the clock it assumed."""
    return {"label": ESTIMATE_LABEL, "inference_ms": round(float(row["inference_time"]) * 1e3, 4),
            "inferences_per_second": round(float(row["inferences_per_second"]), 2),
            "cycles_total": int(float(row["cycles_total"])), "cycles_npu": int(float(row["cycles_npu"])),
            "core_clock_hz": float(row["core_clock"]), "nn_macs": int(float(row["nn_macs"])),
            "system_config": row["system_config"], "memory_mode": row["memory_mode"],
            "accelerator": row["accelerator_configuration"]}


def latency_estimate(estimate: dict[str, Any]) -> dict[str, Any]:
    """The estimate in the report's `latency_estimate` form (what a deploy ranks artifacts by without a device)."""
    from importlib.metadata import version

    return {"p50_ms": estimate["inference_ms"], "kind": ESTIMATE_LABEL,
            "source": f"ethos-u-vela {version('ethos-u-vela')} performance model",
            "basis": (f"Vela's performance model of {estimate['accelerator']} in {estimate['system_config']} "
                      f"({estimate['core_clock_hz'] / 1e6:g} MHz NPU clock, {estimate['memory_mode']}): "
                      f"{estimate['cycles_total']:,} cycles per inference; not a measurement")}


def memory_record(row: dict[str, str], compiled_size: int, arena: int, fast: int,
                  target: Target) -> tuple[dict[str, Any], list[str]]:
    """What the model needs in each of the board's memories against what the board has, and any shortfall.

    The whole compiled .tflite (weights, command stream, flatbuffer) lives in the weights area; the TFLite
    Micro arena (Vela's plan + TFLite Micro's own structures) in the feature-map area; in a Dedicated_Sram mode
    the NPU's cache (Vela's SRAM figure) in SRAM as well.
    """
    weights_area, maps_area = row["weights_storage_area"], row["feature_map_storage_area"]
    arena_estimate = arena + TFLM_OVERHEAD_BYTES
    need: dict[str, int] = {}
    for area, size in ((weights_area, compiled_size), (maps_area, arena_estimate)):
        key = AREA_MEMORY.get(area)
        if key is None:
            raise EdgembError(f"Vela reported an unknown storage area {area!r}")
        need[key] = need.get(key, 0) + size
    if maps_area != "SRAM" and fast:
        need["sram_bytes"] = need.get("sram_bytes", 0) + fast
    problems = []
    for key, size in need.items():
        have = target.memory.get(key)
        if have is None:
            problems.append(f"the board file gives no memory.{key} for the {size:,} B Vela places there")
        elif size > have:
            problems.append(f"{key.removesuffix('_bytes')} needs {size:,} B > {have:,} B")
    record = {"flash_bytes": compiled_size, "arena_bytes": arena_estimate,
              "arena_note": f"Vela's planned tensor arena {arena:,} B + {TFLM_OVERHEAD_BYTES:,} B for TFLite Micro "
                            "(estimate)",
              "npu_cache_bytes": fast, "weights_area": weights_area, "feature_map_area": maps_area,
              "vela_sram_used_bytes": _kib(row["sram_memory_used"]),
              "vela_dram_used_bytes": _kib(row["dram_memory_used"]),
              "vela_flash_used_bytes": _kib(row["off_chip_flash_memory_used"])
              + _kib(row["on_chip_flash_memory_used"]),
              "needs": need, "board": {k: target.memory.get(k) for k in need},
              "target_flash_bytes": target.memory.get("flash_bytes"),
              "target_sram_bytes": target.memory.get("sram_bytes")}
    return record, problems


def sram_budget(target: Target) -> int | None:
    """The SRAM Vela may plan for (its --arena-cache-size): what the board file gives, and with the arena in SRAM
    (Shared_Sram, Sram_Only) no more than the SRAM left after TFLite Micro's own structures, so a plan Vela
    squeezes to the limit still fits once the firmware adds them. None: the memory mode's own size."""
    budget = target.npu.get("arena_cache_size") if target.npu else None
    sram = target.memory.get("sram_bytes")
    if target.npu and target.npu["memory_mode"] in ("Shared_Sram", "Sram_Only") and sram:
        budget = min(budget or sram, sram - TFLM_OVERHEAD_BYTES)
    return budget


def write_header(path: Path, split: dict[str, Any], memory: dict[str, Any], estimate: dict[str, Any]) -> None:
    """model_data.h for an Ethos-U firmware: what to register, the arena to reserve and where it must live."""
    cpu = split["cpu_fallback_ops"]
    resolver = "tflite::Register_ETHOSU()" + (f" plus the CPU ops {', '.join(cpu)}" if cpu else "")
    path.write_text(
        "// Generated by edgemb: the Vela-compiled int8 model for TFLite Micro with the Ethos-U driver.\n"
        "#pragma once\n\n"
        f"// {estimate['accelerator']}, {estimate['system_config']}, {estimate['memory_mode']}: "
        f"{split['npu']} of {split['total']} operators on the NPU.\n"
        f"// Register in your MicroMutableOpResolver: {resolver}.\n"
        f"// Tensor arena: {memory['arena_note']}; place it in {memory['feature_map_area']}.\n"
        f"constexpr unsigned int kTensorArenaSize = {memory['arena_bytes']};  // bytes, estimated\n"
        f"extern const unsigned char {C_ARRAY_NAME}[];  // keep in {memory['weights_area']}, 16-byte aligned\n"
        f"extern const unsigned int {C_ARRAY_NAME}_len;\n"
    )


class VelaBackend:
    """ethos-u-vela behind the common interface: compile for the NPU, run parity on the reference kernels."""

    name = "vela"

    def available(self) -> tuple[bool, str]:
        """ethos-u-vela compiles; the TFLite tools make the int8 model it compiles."""
        return importable(("ethosu.vela", "ai_edge_quantizer", "litert_torch"), "ethos-u-vela and the TFLite tools")

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """Vela-compiled model, its estimate, memory against the board, operator split and C array."""
        if precision != "int8":
            raise EdgembError(f"Ethos-U NPUs run int8 only, not {precision!r}")
        if not target.npu:
            raise EdgembError(f"target {target.name} has no [npu] section: an Ethos-U board file names its "
                              "accelerator, system_config and memory_mode (see targets/corstone-300.toml)")
        folder = out_dir / "vela"
        folder.mkdir(exist_ok=True)
        source = folder / "model.int8.tflite"
        inline_buffers(int8_tflite(inputs), source)  # the same int8 model as tflite/tflm, every buffer inline
        npu = {**target.npu, "arena_cache_size": sram_budget(target)}
        compiled, row, log = run_vela(source, npu, folder)
        model = folder / "model.vela.tflite"
        shutil.move(compiled, model)
        for summary in (folder / "vela-output").glob("*_summary_*.csv"):
            shutil.move(summary, folder / "summary.csv")
        shutil.rmtree(folder / "vela-output", ignore_errors=True)
        arena, fast = planned_arena(model)
        split = operator_split(source, model, log)
        memory, problems = memory_record(row, model.stat().st_size, arena, fast, target)
        memory["vela_sram_budget_bytes"] = npu["arena_cache_size"]  # --arena-cache-size (None: the memory mode's)
        ops = sorted(set(_operators(model)))
        write_c_array(model, folder, ops, memory["arena_bytes"])
        estimate = estimate_record(row)
        write_header(folder / "model_data.h", split, memory, estimate)
        artifact = Artifact(self.name, precision, model, extra={
            "estimate": estimate, "latency_estimate": latency_estimate(estimate), "npu_split": split,
            "memory": memory, "ops": ops,
            "c_source": "vela/model_data.cc", "source_model": "vela/model.int8.tflite", "vela_ini": "vela/vela.ini",
            "parity_note": PARITY_NOTE, "quantizer": int8_quantization(inputs)["quantizer"]})
        return mark_fit(artifact, problems, target.board)

    def load(self, artifact: Artifact, target: Target) -> TfliteRunner:
        """The int8 flatbuffer Vela compiled from, on LiteRT's reference kernels (no NPU here)."""
        return TfliteRunner(artifact.path.parent / "model.int8.tflite", reference_kernels=True)
