"""Boards as data: `targets/*.toml` loaded and validated, so adding a board is adding a file."""

from __future__ import annotations

import difflib
import os
import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemb.errors import EdgembError
from edgemb.hostinfo import read_cpuinfo

PACKAGE = Path(__file__).resolve().parent
# The boards shipped with edgemb: `targets/` at the top of a checkout; in an installed wheel the same files are
# package data under edgemb/targets_data/ (setup.py copies them at build time, so the checkout holds one copy).
TARGETS_DIR = next((d for d in (PACKAGE / "targets_data", PACKAGE.parent / "targets") if d.is_dir()),
                   PACKAGE.parent / "targets")
TARGETS_ENV = "EDGEMB_TARGETS"  # more folders of board files, separated by ":"; they win over shipped names
KINDS = ("cpu", "mcu", "accelerator")
BACKENDS = ("onnxruntime", "openvino", "tflite", "tflm", "tvm", "vela")
PRECISIONS = ("fp32", "fp16", "int8")
ACCESS = ("local", "emulated", "rpc", "ssh", "none")


@dataclass(frozen=True)
class Target:
    """One board: what it computes with, what it can run, and how edgemb reaches it."""

    name: str
    board: str
    kind: str
    arch: str
    core: str
    cores: int
    isa: tuple[str, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    threads: int
    memory: dict[str, int]
    access: str
    tvm_target: dict[str, Any] | None = None
    openvino_device: str | None = None
    notes: str = ""
    npu: dict[str, Any] | None = None  # Ethos-U boards: accelerator, system_config, memory_mode (see _parse_npu)
    published_latency: tuple[dict[str, Any], ...] = ()  # cited board measurements that latency estimates scale
    path: Path | None = field(default=None, compare=False)

    def supports(self, backend: str, precision: str | None = None) -> bool:
        """Whether this board runs a backend (and precision)."""
        return backend in self.backends and (precision is None or precision in self.precisions)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `edgemb targets --json` and reports."""
        return {"name": self.name, "board": self.board, "kind": self.kind, "arch": self.arch, "core": self.core,
                "cores": self.cores, "isa": list(self.isa), "backends": list(self.backends),
                "precisions": list(self.precisions), "threads": self.threads, "memory": self.memory,
                "access": self.access, "tvm_target": self.tvm_target, "openvino_device": self.openvino_device,
                "notes": self.notes, "published_latency": [dict(r) for r in self.published_latency],
                **({"npu": self.npu} if self.npu else {})}


def _field(data: dict, key: str, kind: type | tuple, where: str, required: bool = True) -> Any:
    if key not in data:
        if required:
            raise EdgembError(f"{where}: missing field `{key}`")
        return None
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EdgembError(f"{where}: field `{key}` must be {names}, got {value!r}")
    return value


def _choices(values: list, allowed: tuple[str, ...], key: str, where: str) -> tuple[str, ...]:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise EdgembError(f"{where}: field `{key}` has {bad[0]!r}; allowed: {', '.join(allowed)}")
    return tuple(values)


# Vela 5.2's --accelerator-config choices.
NPU_ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
                    "ethos-u65-512", "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024",
                    "ethos-u85-2048")
NPU_KEYS = {"accelerator": str, "system_config": str, "memory_mode": str, "core_clock_hz": (int, float),
            "arena_cache_size": int, "sources": list}


def _parse_npu(data: dict[str, Any], backends: tuple[str, ...], where: str) -> dict[str, Any] | None:
    """The [npu] section of an Ethos-U board: Vela's accelerator config, system config and memory mode."""
    npu = _field(data, "npu", dict, where, required=False)
    if npu is None:
        if "vela" in backends:
            raise EdgembError(f"{where}: backend `vela` needs an [npu] section with accelerator, system_config and "
                              "memory_mode (see targets/corstone-300.toml)")
        return None
    for key in ("accelerator", "system_config", "memory_mode"):
        _field(npu, key, str, f"{where} [npu]")
    unknown = sorted(set(npu) - set(NPU_KEYS))
    if unknown:
        raise EdgembError(f"{where}: unknown field `npu.{unknown[0]}`; allowed: {', '.join(NPU_KEYS)}")
    for key, kind in NPU_KEYS.items():
        _field(npu, key, kind, f"{where} [npu]", required=False)
    _choices([npu["accelerator"]], NPU_ACCELERATORS, "npu.accelerator", where)
    for key in ("core_clock_hz", "arena_cache_size"):
        if key in npu and npu[key] <= 0:
            raise EdgembError(f"{where}: field `npu.{key}` must be positive, got {npu[key]!r}")
    return dict(npu)


def parse_target(data: dict[str, Any], where: str) -> Target:
    """Validate one target document; every error names the file and the field."""
    name = _field(data, "name", str, where)
    kind = _field(data, "kind", str, where)
    _choices([kind], KINDS, "kind", where)
    cpu = _field(data, "cpu", dict, where)
    runtime = _field(data, "runtime", dict, where)
    memory = _field(data, "memory", dict, where)
    for key, value in memory.items():
        if not isinstance(value, int) or value <= 0:
            raise EdgembError(f"{where}: field `memory.{key}` must be a positive number of bytes, got {value!r}")
    device = _field(data, "device", dict, where)
    access = _field(device, "access", str, f"{where} [device]")
    _choices([access], ACCESS, "device.access", where)
    cores = _field(cpu, "cores", int, f"{where} [cpu]")
    threads = _field(runtime, "threads", int, f"{where} [runtime]")
    if cores < 1 or not 1 <= threads <= cores:
        raise EdgembError(f"{where}: `runtime.threads` ({threads}) must be between 1 and `cpu.cores` ({cores})")
    tvm_target = _field(runtime, "tvm_target", dict, f"{where} [runtime]", required=False)
    if tvm_target is not None and "kind" not in tvm_target:
        raise EdgembError(f"{where}: field `runtime.tvm_target` needs a `kind` (e.g. \"llvm\")")
    return Target(
        name=name, board=_field(data, "board", str, where), kind=kind,
        arch=_field(cpu, "arch", str, f"{where} [cpu]"), core=_field(cpu, "core", str, f"{where} [cpu]"),
        cores=cores, isa=tuple(_field(cpu, "isa", list, f"{where} [cpu]")),
        backends=_choices(_field(runtime, "backends", list, f"{where} [runtime]"), BACKENDS, "runtime.backends",
                          where),
        precisions=_choices(_field(runtime, "precisions", list, f"{where} [runtime]"), PRECISIONS,
                            "runtime.precisions", where),
        threads=threads, memory=dict(memory), access=access, tvm_target=tvm_target,
        openvino_device=_field(runtime, "openvino_device", str, f"{where} [runtime]", required=False),
        notes=data.get("notes", ""),
        npu=_parse_npu(data, tuple(runtime.get("backends", ())), where),
        published_latency=_published_latency(data.get("published_latency", []), where),
    )


PUBLISHED_FIELDS = {"backend": str, "precision": str, "model": str, "ms": (int, float), "threads": int,
                    "source": str}


def _published_latency(entries: Any, where: str) -> tuple[dict[str, Any], ...]:
    """`[[published_latency]]` tables: a measured latency of a named zoo model, with where it was published."""
    if not isinstance(entries, list):
        raise EdgembError(f"{where}: `published_latency` must be a list of [[published_latency]] tables")
    checked = []
    for i, entry in enumerate(entries):
        at = f"{where} [[published_latency]] #{i + 1}"
        if not isinstance(entry, dict):
            raise EdgembError(f"{at}: must be a table")
        record = {key: _field(entry, key, kind, at) for key, kind in PUBLISHED_FIELDS.items()}
        _choices([record["backend"]], BACKENDS, "backend", at)
        _choices([record["precision"]], PRECISIONS, "precision", at)
        if record["ms"] <= 0:
            raise EdgembError(f"{at}: `ms` must be a positive latency in milliseconds, got {record['ms']!r}")
        checked.append({**record, "note": entry.get("note", "")})
    return tuple(checked)


def load_target_file(path: Path) -> Target:
    """Read and validate one targets/*.toml file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EdgembError(f"{path}: not a readable TOML file ({exc})") from exc
    target = parse_target(data, str(path))
    if target.name != path.stem:
        raise EdgembError(f"{path}: field `name` is {target.name!r} but the file is named {path.stem!r}")
    if target.name == "x86":
        target = _with_host_isa(target)
    return Target(**{**target.__dict__, "path": path})


def _with_host_isa(target: Target) -> Target:
    """The x86 target describes this host: fill in the ISA flags the CPU actually has."""
    flags = read_cpuinfo().isa
    cores = len(os.sched_getaffinity(0))
    return Target(**{**target.__dict__, "isa": tuple(flags) or target.isa, "cores": cores,
                     "threads": min(target.threads, cores), "arch": platform.machine() or target.arch})


def target_folders(folder: Path | None = None) -> list[Path]:
    """Where boards are looked up by name: $EDGEMB_TARGETS folders first, then the shipped ones."""
    if folder is not None:
        return [folder]
    extra = [Path(p).expanduser() for p in os.environ.get(TARGETS_ENV, "").split(os.pathsep) if p.strip()]
    for path in extra:
        if not path.is_dir():
            raise EdgembError(f"{TARGETS_ENV} names {path}, which is not a folder: point it at a folder of "
                              f"board .toml files")
    return [*extra, TARGETS_DIR]


def all_targets(folder: Path | None = None) -> dict[str, Target]:
    """Every target in the folders, by name (a board in $EDGEMB_TARGETS replaces a shipped one of that name)."""
    found: dict[str, Path] = {}
    for directory in reversed(target_folders(folder)):
        found.update({path.stem: path for path in directory.glob("*.toml")})
    return {name: load_target_file(found[name]) for name in sorted(found)}


def is_target_path(text: str) -> bool:
    """True when --target names a file rather than a board (`boards/my.toml`, `./my.toml`, `/abs/my`)."""
    return text.endswith(".toml") or "/" in text or text.startswith("~")


def get_target(name: str, folder: Path | None = None) -> Target:
    """One target by name or by the path of its .toml file, or an error listing the known ones."""
    if is_target_path(name):
        path = Path(name).expanduser()
        if path.suffix != ".toml":
            path = path.with_name(path.name + ".toml") if not path.is_file() else path
        if not path.is_file():
            raise EdgembError(f"target file {path} does not exist: pass the path of a board .toml file (see "
                              f"targets/*.toml for the fields), or a name from `edgemb targets`")
        return load_target_file(path)
    folders = target_folders(folder)
    for directory in folders:
        path = directory / f"{name}.toml"
        if path.is_file():
            return load_target_file(path)
    known = sorted({p.stem for d in folders for p in d.glob("*.toml")})
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EdgembError(f"unknown target {name!r}: {hint}known targets: {', '.join(known)} (or pass a board file: "
                      f"--target path/to/board.toml, or set {TARGETS_ENV} to a folder of them)")
