"""Targets are data: every shipped file validates, and a bad one gets an error naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from edgemb import hostinfo
from edgemb.errors import EdgembError
from edgemb.hostinfo import ISA_FLAGS, CpuInfo, parse_cpuinfo
from edgemb.targets import TARGETS_DIR, all_targets, get_target, load_target_file

REQUIRED = ["x86", "rpi4", "rpi5", "rpi3", "jetson-orin", "intel-ncs2", "intel-npu", "cortex-m7", "cortex-m4"]


def test_every_required_board_is_described():
    targets = all_targets()
    assert set(REQUIRED) <= set(targets)
    assert targets["rpi4"].core == "cortex-a72" and targets["rpi4"].cores == 4
    assert targets["rpi4"].memory["ram_bytes"] == 4 * 2**30
    assert "dotprod" in targets["rpi5"].isa and targets["rpi3"].core == "cortex-a53"
    assert targets["intel-ncs2"].precisions == ("fp16",) and targets["intel-ncs2"].openvino_device == "MYRIAD"
    assert targets["cortex-m7"].memory["flash_bytes"] > targets["cortex-m4"].memory["flash_bytes"]
    for name in ("rpi3", "rpi4", "rpi5", "jetson-orin"):
        assert targets[name].tvm_target["mtriple"] == "aarch64-linux-gnu"


# Two cores of a Skylake-SP server as /proc/cpuinfo shows them (flags trimmed), with known answers below.
CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
cpu MHz\t\t: 2394.374
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512dq avx512bw avx512vl

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
cpu MHz\t\t: 2401.000
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512dq avx512bw avx512vl
"""


def test_cpuinfo_parse_of_a_known_text():
    cpu = parse_cpuinfo(CPUINFO)
    assert cpu.model == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz" and cpu.mhz == 2401.0
    assert cpu.isa == ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw")  # no VNNI on Skylake
    assert parse_cpuinfo("processor\t: 0\n") == CpuInfo()  # an ARM-style file without x86 flags


def test_x86_target_takes_its_isa_from_the_host_probe(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(CPUINFO)
    monkeypatch.setattr(hostinfo, "CPUINFO", fake)
    assert get_target("x86").isa == ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw")
    monkeypatch.setattr(hostinfo, "CPUINFO", tmp_path / "missing")  # unreadable: the board file's own list
    assert list(get_target("x86").isa) == tomllib.loads((TARGETS_DIR / "x86.toml").read_text())["cpu"]["isa"]


# An x86 CPU with the left flag has the right one too (each extension builds on the other).
IMPLIES = {"avx": "sse4_2", "avx2": "avx", "fma": "avx", "avx512f": "avx2", "avx512bw": "avx512f",
           "avx512_vnni": "avx512f", "avx512_bf16": "avx512f", "avx_vnni": "avx2", "amx_int8": "avx512f"}


def test_x86_describes_this_host():
    x86 = get_target("x86")
    assert x86.threads <= x86.cores
    for flag in x86.isa:
        assert flag in ISA_FLAGS, f"{flag} is not a flag the host probe reports"
        assert IMPLIES.get(flag, flag) in x86.isa, f"{flag} without {IMPLIES[flag]}: not a real x86 CPU's flags"


def test_unknown_target_lists_known_ones():
    with pytest.raises(EdgembError, match=r"did you mean rpi4.*known targets: .*cortex-m4"):
        get_target("rpi44")


BASE = """
name = "board"
board = "A board"
kind = "cpu"
[cpu]
arch = "aarch64"
core = "cortex-a72"
cores = 4
isa = ["neon"]
[runtime]
threads = 4
backends = ["tflite"]
precisions = ["int8"]
[memory]
ram_bytes = 1024
[device]
access = "ssh"
"""


@pytest.mark.parametrize("old,new,needle", [
    ('cores = 4', 'cores = "four"', "`cores` must be int"),
    ('backends = ["tflite"]', 'backends = ["tensorrt"]', "`runtime.backends` has 'tensorrt'"),
    ('threads = 4', 'threads = 8', "`runtime.threads` (8)"),
    ('kind = "cpu"', 'kind = "gpu"', "`kind` has 'gpu'"),
    ('ram_bytes = 1024', 'ram_bytes = -1', "`memory.ram_bytes` must be a positive"),
    ('access = "ssh"', '', "missing field `access`"),
    ('name = "board"', 'name = "other"', "file is named 'board'"),
    ('[memory]', '[memory', "not a readable TOML"),
])
def test_bad_target_files_name_the_field(tmp_path, old, new, needle):
    path = tmp_path / "board.toml"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(EdgembError) as info:
        load_target_file(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_cli_lists_targets():
    result = subprocess.run([sys.executable, "-m", "edgemb", "targets", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {t["name"] for t in json.loads(result.stdout)} == {p.stem for p in TARGETS_DIR.glob("*.toml")}
