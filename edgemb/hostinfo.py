"""This host's CPU as every measured number must state it: model name, clock and the ISA flags that pick kernels.

`/proc/cpuinfo` is read here and nowhere else: the x86 board file (edgemb.targets), task parity reports and the
benchmark scripts all take the same parse, so "ISA" means the same flags wherever it is printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# x86 flags that decide which float and int8 kernels a runtime can use, in the order reports list them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
             "avx512_bf16")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the first core (model, flags) and the highest clock of any core."""

    model: str = UNKNOWN
    flags: frozenset[str] = frozenset()
    mhz: float | None = None

    @property
    def isa(self) -> tuple[str, ...]:
        """The kernel-relevant flags this CPU has, in ISA_FLAGS order."""
        return tuple(f for f in ISA_FLAGS if f in self.flags)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form measured results carry: CPU model and ISA flags."""
        return {"model": self.model, "isa": list(self.isa)}


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of /proc/cpuinfo: first `model name`, first `flags`, highest `cpu MHz`."""
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    return CpuInfo(model.group(1).strip() if model else UNKNOWN,
                   frozenset(flags.group(1).split()) if flags else frozenset(), max(mhz) if mhz else None)


def read_cpuinfo(path: Path | None = None) -> CpuInfo:
    """This host's CpuInfo; an unreadable file (not Linux, a sandbox) gives an empty one."""
    try:
        text = (path or CPUINFO).read_text()
    except OSError:
        return CpuInfo()
    return parse_cpuinfo(text)


def host_cpu() -> dict[str, Any]:
    """CPU model and ISA flags of this host, as every measured number must state them."""
    return read_cpuinfo().to_dict()
