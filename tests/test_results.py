"""results/*.json: every row says what it was measured on, and the tables' labels agree with the code's defaults.

The scripts in scripts/ stamp each row they write with scripts/provenance.py's `measured_on()` (commit, CPU,
ISA); `make results` regenerates every table. Rows measured before that carry NOT_RECORDED as their commit,
allowed only in the files listed in STALE below until their table is measured again.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgemb.budget import DEFAULT_MAX_DROP
from edgemb.hostinfo import read_cpuinfo
from edgemb.quant.options import AUTO_METHOD, DEFAULT_METHOD, METHODS, QuantizeSettings
from edgemb.stages.quantize import quantize_model
from edgemb.zoo import parse_model_name
from edgemb.zoo.weights.load import default_weights
from provenance import NOT_RECORDED, measured_on

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = ROOT / "README.md"
# Where each results file keeps its rows (dotted paths; a missing optional section has no rows).
ROWS = {"bench.json": ("models",), "compile.json": ("rows",), "deploy.json": ("reports",), "estimate.json": ("rows",),
        "ethos_u.json": ("rows",), "quantization.json": ("rows", "imagenet.rows"), "tasks.json": ("reports",),
        "tvm_tuning.json": ("models",), "tvm_tuning_all_threads.json": ("models",),
        "tvm_tuning_tuned.json": ("models",)}
# Tables measured before rows recorded their commit: re-measure them (`make results`) and drop them from here.
STALE: set[str] = set()
COMMIT = re.compile(r"^[0-9a-f]{7,40}(\+dirty)?$")


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def rows_of(name: str) -> list[dict[str, Any]]:
    """Every row of one results file, from the places ROWS names."""
    data, rows = _load(name), []
    for dotted in ROWS[name]:
        node: Any = data
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        rows += node or []
    return rows


def provenance(row: dict[str, Any]) -> dict[str, Any] | None:
    """A row's {"commit", "cpu", "isa"} (`measured_on`), or None."""
    return row.get("measured_on")


def test_every_results_file_is_known():
    files = {p.name for p in RESULTS.glob("*.json")}
    assert files == set(ROWS), f"say in tests/test_results.py ROWS where the rows of {files ^ set(ROWS)} are"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_row_records_its_commit_cpu_and_isa(name):
    rows = rows_of(name)
    assert rows, f"results/{name} has no rows where ROWS says they are"
    for i, row in enumerate(rows):
        stamp = provenance(row)
        assert stamp is not None, f"results/{name} row {i} records no commit/CPU/ISA (scripts/provenance.py)"
        if stamp["commit"] == NOT_RECORDED:
            assert name in STALE, f"results/{name} row {i} has no commit and the file is not listed as stale"
            continue
        assert COMMIT.match(stamp["commit"]), f"results/{name} row {i}: commit {stamp['commit']!r}"
        assert isinstance(stamp["cpu"], str) and stamp["cpu"] and stamp["cpu"] != NOT_RECORDED
        assert isinstance(stamp["isa"], list), f"results/{name} row {i}: isa {stamp['isa']!r}"


def test_stale_files_still_hold_stale_rows():
    # a table measured again leaves STALE, so a later unstamped row in it fails instead of passing quietly
    fresh = [n for n in sorted(STALE) if not any((provenance(r) or {}).get("commit") == NOT_RECORDED
                                                 for r in rows_of(n))]
    assert not fresh, f"{fresh} no longer hold rows without a commit: remove them from STALE"


def test_measured_on_states_this_commit_and_this_cpu():
    stamp = measured_on()
    cpu = read_cpuinfo()
    assert set(stamp) == {"commit", "cpu", "isa"}
    assert COMMIT.match(stamp["commit"]) and stamp["cpu"] == cpu.model and stamp["isa"] == list(cpu.isa)


def test_only_changed_code_makes_a_commit_dirty_not_the_files_table_runs_write(tmp_path):
    # `make results` writes results/*.json, README.md and BENCHMARKS.md table by table: its later rows must not be
    # stamped `+dirty` for the earlier tables' output, while a changed source file must be
    from provenance import commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    files = {"results/x.json": "{}", "README.md": "# r", "BENCHMARKS.md": "# b", "edgemb/a.py": "A = 1",
             "calibration/README.md": "# c"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    clean = commit(tmp_path)
    assert COMMIT.match(clean) and not clean.endswith("+dirty")
    for name in ("results/x.json", "README.md", "BENCHMARKS.md"):
        (tmp_path / name).write_text(files[name] + " changed")
    (tmp_path / "results" / "new.json").write_text("{}")  # untracked: never counted
    assert commit(tmp_path) == clean, "a table run's own output made the commit dirty"
    for name in ("edgemb/a.py", "calibration/README.md"):  # source, and a README.md that is not the table README
        git("stash", "-q")
        (tmp_path / name).write_text(files[name] + " changed")
        assert commit(tmp_path) == clean + "+dirty", f"a change to {name} left the commit clean"
        git("checkout", "-q", "--", name)


def _claims_default(label: str) -> bool:
    """Whether a configuration label says it is today's default ("previous"/"when measured" do not)."""
    return bool(re.search(r"\bdefault\b", label)) and not re.search(r"previous default|default when measured", label)


def test_quantization_table_labels_its_default_row_with_the_code_defaults():
    settings = inspect.signature(quantize_model).parameters["settings"].default  # what a default row ran with
    assert settings == QuantizeSettings()
    defaults = dataclasses.asdict(settings)
    assert defaults["method"] == DEFAULT_METHOD
    stale = {id(r) for r in rows_of("quantization.json") if provenance(r)["commit"] == NOT_RECORDED}
    others = [m for m in (*METHODS, AUTO_METHOD) if m != DEFAULT_METHOD]
    for row in (r for r in rows_of("quantization.json") if r["tool"] == "edgemb"):
        label = row["config"]
        if "default when measured" in label:
            assert id(row) in stale, f"{label!r}: only a row measured before provenance may say so"
        if not _claims_default(label):
            continue
        assert re.search(rf"\b{DEFAULT_METHOD}\b", label), f"{row['model']} {label!r}: default is {DEFAULT_METHOD}"
        assert not [m for m in others if re.search(rf"\b{m}\b", label)], f"{label!r} names another range method"
        rounding = "round-to-nearest" if defaults["weight_rounding"] == "nearest" else defaults["weight_rounding"]
        if "gptq" in label or "round-to-nearest" in label:
            assert rounding in label, f"{label!r}: default weight rounding is {defaults['weight_rounding']}"
        if "bias correction" in label and "no bias correction" not in label:
            assert defaults["bias_correction"], f"{label!r}: bias correction is off by default"
        for option, words in (("act_equalization", "activation equalization"), ("refit", "refit")):
            said_on = re.search(rf"(?<!no ){words}", label) is not None
            state = "on" if defaults[option] else "off"
            assert said_on == defaults[option], f"{label!r}: {words} is {state} by default"


def test_readme_calls_only_the_code_default_the_default():
    text = README.read_text()
    for method in (*METHODS, AUTO_METHOD):
        said = re.findall(rf"`?\b{method}\b`?\s*\(default(?! when measured)", text)
        assert method == DEFAULT_METHOD or not said, f"README calls {method!r} the default; it is {DEFAULT_METHOD!r}"
    for value in re.findall(r"--max-drop[^)\n]*\(default ([\d.]+)\)", text):
        assert float(value) == DEFAULT_MAX_DROP, f"README: --max-drop default {value}, code {DEFAULT_MAX_DROP}"


def test_deploy_rows_without_a_setting_used_the_default_budget_and_weights():
    for report in rows_of("deploy.json"):
        command = report["model_arg"]
        if "MAX_DROP=" not in command:
            assert report["settings"]["max_drop"] == DEFAULT_MAX_DROP, f"{command}: budget is not the default"
        if "WEIGHTS=" not in command:
            default, _ = default_weights(parse_model_name(command.split()[0]))
            assert report["weights"]["spec"] == default, f"`make deploy MODEL={command}` would use {default}"
