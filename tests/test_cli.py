"""The CLI as a user meets it: a subprocess, its exit codes, its output and its help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgemb.zoo import parse_model_name


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemb", *args], capture_output=True, text=True, timeout=600)


def test_models_json_lists_every_entry_with_counts():
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sum(row["task"] == "classification" for row in rows.values()) == 14
    assert rows["ssdlite_v3l_1.0"]["task"] == "detection" and rows["lraspp_v3l_1.0"]["task"] == "segmentation"
    assert set(rows["v1_0.25"]) >= {"name", "family", "alpha", "resolution", "params", "macs"}
    assert rows["v2_1.0"]["params"] == 3_504_872 and rows["v3s_1.0"]["family"] == "MobileNetV3-Small"


def test_help_is_useful():
    top = run("--help")
    assert top.returncode == 0 and "export" in top.stdout and "models" in top.stdout
    sub = run("export", "--help")
    assert "--weights" in sub.stdout and "--opset" in sub.stdout and "@R" in sub.stdout



def _quantize_flags() -> dict:
    import argparse

    from edgemb.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in commands.choices["quantize"]._actions}


def test_quantize_flags_offer_what_quantize_settings_take_with_their_defaults():
    """`edgemb quantize` and QuantizeSettings cannot drift apart: a flag for every setting, the same choices, and
    unset flags give the settings' own defaults."""
    import dataclasses

    from edgemb.quant import options
    from edgemb.quant.options import QuantizeSettings

    flags = _quantize_flags()
    fields = dataclasses.fields(QuantizeSettings)
    assert {f.name for f in fields} == {"method", "weight_rounding", "granularity", "activation_type", "cle",
                                        "bias_correction", "refit", "act_equalization", "max_float_layers"}
    for field in fields:
        assert flags[field.name].default == field.default, field.name
    assert flags["method"].default == options.DEFAULT_METHOD == "auto"
    assert sorted(flags["method"].choices) == sorted((options.AUTO_METHOD, *options.METHODS))
    assert sorted(flags["weight_rounding"].choices) == sorted(options.WEIGHT_ROUNDINGS)
    assert sorted(flags["granularity"].choices) == sorted(options.GRANULARITIES)
    assert sorted(flags["activation_type"].choices) == sorted(options.ACTIVATION_TYPES)


def test_quantize_passes_every_flag_to_the_settings(monkeypatch, tmp_path):
    """Each quantize flag reaches its own setting (none swapped or dropped), and the budget flags one Budget."""
    from edgemb import cli
    from edgemb.budget import Budget
    from edgemb.quant.options import QuantizeSettings
    from edgemb.stages import quantize

    class Called(Exception):
        pass

    seen = {}

    def fake(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise Called

    monkeypatch.setattr(quantize, "quantize_model", fake)
    argv = ["quantize", "v1_0.25", "--weights", "ref", "--calib", "fashion-mnist:train:512", "--out",
            str(tmp_path / "q"), "--method", "mse", "--weight-rounding", "nearest", "--granularity", "per-tensor",
            "--activation-type", "int8", "--cle", "--bias-correction", "--no-refit", "--no-act-equalization",
            "--max-float-layers", "3", "--max-drop", "0.7", "--eval", "fashion-mnist:test:100"]
    with pytest.raises(Called):
        cli.drive_quantize(cli.build_parser().parse_args(argv))
    settings = seen["args"][5]
    assert settings == QuantizeSettings(method="mse", granularity="per-tensor", activation_type="int8",
                                        weight_rounding="nearest", cle=True, bias_correction=True, refit=False,
                                        act_equalization=False, max_float_layers=3)
    assert seen["args"][:5] == ("v1_0.25", "fashion-mnist:train:512", tmp_path / "q", "ref", None)
    assert seen["kwargs"] == {"eval_spec": "fashion-mnist:test:100", "budget": Budget(0.7, None, None)}
    with pytest.raises(Called):
        cli.drive_quantize(cli.build_parser().parse_args(argv[:8]))
    assert seen["args"][5] == QuantizeSettings() and seen["kwargs"] == {"eval_spec": None, "budget": None}

@pytest.mark.slow
def test_export_v3l_end_to_end(tmp_path):
    # untrained at 224: the default weights would be the 64x64 reference model when ImageNet's are absent
    result = run("export", "v3l_1.0", "--weights", "random", "--out", str(tmp_path / "x"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "x" / "export.json").read_text())
    assert report["model"] == "v3l_1.0" and report["parity"]["max_abs_diff"] <= 1e-4
    assert "max |onnx - torch|" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["export", "v2_1.1", "--out", "X"], "did you mean"),
    (["export", "v2_1.0@100", "--out", "X"], "multiple of 32"),
    (["export", "v2_1.0", "--weights", "missing.pt", "--out", "X"], "neither an existing file"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path, args, needle):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_wrong_checkpoint_and_wrong_hash_exit_2(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(parse_model_name("v1_0.25").build(10).state_dict(), path)
    wrong = run("export", "v2_1.0", "--weights", str(path), "--out", str(tmp_path / "o"))
    assert wrong.returncode == 2 and "does not fit v2_1.0" in wrong.stderr
    bad_hash = run("export", "v1_0.25", "--weights", path.as_uri(), "--sha256", "0" * 64, "--out", str(tmp_path / "o"))
    assert bad_hash.returncode == 2 and "sha256 mismatch" in bad_hash.stderr
    assert not (tmp_path / "o").exists() or not any(Path(tmp_path / "o").iterdir())


def test_parity_failure_exits_1(tmp_path, monkeypatch):
    from edgemb import cli
    from edgemb.stages import export

    monkeypatch.setattr(export, "MAX_ABS_DIFF", -1.0)  # no export can meet a negative tolerance
    code = cli.main(["export", "v1_0.25@64", "--out", str(tmp_path / "o")])
    assert code == 1


@pytest.mark.parametrize("setting,value", [("runs", 0), ("device_samples", 100_001), ("max_drop", float("nan")),
                                           ("tune_trials", -1)])
def test_flags_and_library_settings_meet_one_range_check(capsys, setting, value):
    from edgemb import cli
    from edgemb.errors import EdgembError
    from edgemb.stages.deploy import DeploySettings
    from edgemb.stages.deploy_guard import check_settings

    flag = "--" + setting.replace("_", "-")
    assert cli.main(["deploy", "v1_0.25", "--target", "x86", flag, str(value)]) == 2
    said = capsys.readouterr().err.strip().split("error: ", 1)[1]
    with pytest.raises(EdgembError) as info:
        check_settings(DeploySettings("v1_0.25", "x86", **{setting: value}))
    assert str(info.value) == said and said.startswith(f"{flag} must be between")


def test_a_deploy_from_the_command_line_checks_its_numbers_once(monkeypatch, tmp_path):
    # one validator per number: `edgemb deploy` leaves its settings to the deploy's own check_settings, so the same
    # limit is not checked (and could not be worded) twice
    from edgemb import cli, limits
    from edgemb.errors import EdgembError
    from edgemb.stages import deploy_guard

    checked = []
    real = limits.out_of_range

    def counting(values):
        checked.append(values.get("runs"))
        return real(values)

    def stop(*args, **kwargs):
        raise EdgembError("stop: the settings were accepted")

    monkeypatch.setattr(cli, "out_of_range", counting)  # the command line's check
    monkeypatch.setattr(limits, "out_of_range", counting)  # check_limits, behind deploy_guard.check_settings
    monkeypatch.setattr(deploy_guard, "_locked_run", stop)
    assert cli.main(["deploy", "v1_0.25", "--target", "x86", "--runs", "7", "--out", str(tmp_path)]) == 2
    assert checked.count(7) == 1, f"--runs 7 was checked {checked.count(7)} times"


def test_every_number_a_deploy_command_takes_is_a_setting_the_deploy_checks():
    # the command line skips its own check for deploy and task-verify: that is only safe while each of their
    # numeric options reaches DeploySettings, which deploy_guard.check_settings checks
    from dataclasses import fields

    from edgemb import cli
    from edgemb.limits import LIMITS
    from edgemb.stages.deploy import DeploySettings

    settings = {f.name for f in fields(DeploySettings)}
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    for name in ("deploy", "task-verify"):
        numbers = {a.dest for a in commands[name]._actions if a.dest in LIMITS}
        assert numbers and numbers <= settings, f"{name}: {sorted(numbers - settings)} are not deploy settings"
    skipping = [name for name, sub in commands.items() if sub.get_default("numbers_are_deploy_settings")]
    assert sorted(skipping) == ["deploy", "task-verify"]
