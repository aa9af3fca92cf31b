"""Hardening (issue 14): one deploy per folder, no stale PASS, sane numbers, one-line errors, boards by path,
a quiet and fast first look, honest plots, ties decided by fidelity, and small calibration sets flagged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgemb import cli
from edgemb.calibration_check import MIN_CALIBRATION_SAMPLES, calibration_warning
from edgemb.device.devices import Measurement, combine_rounds
from edgemb.errors import EdgembError
from edgemb.locking import LOCK_NAME
from edgemb.stages.deploy import _recommend
from edgemb.stages.report_html import render
from edgemb.targets import TARGETS_DIR, all_targets, get_target

ROOT = Path(__file__).resolve().parents[1]


def edgemb(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemb", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess | tuple[int, str], needle: str) -> None:
    code, stderr = (result.returncode, result.stderr) if hasattr(result, "returncode") else result
    assert code == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert needle in stderr, stderr


# --- 1 and 2: a stale report is removed when a run with other settings starts; one deploy per folder -------

def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_second_deploy_into_the_same_folder_exits_2_and_a_new_run_removes_the_old_pass(tmp_path):
    folder = tmp_path / "x86" / "v1_0.25"
    folder.mkdir(parents=True)
    old = {"model": "v1_0.25", "passed": True, "run_key": "from-another-run", "artifacts": []}
    (folder / "report.json").write_text(json.dumps(old))
    (folder / "report.html").write_text("<html>PASSED</html>")

    args = ["deploy", "v1_0.25", "--target", "x86", "--weights", "ref", "--calib", "fashion-mnist:train:64",
            "--eval", "fashion-mnist:test:200", "--runs", "2", "--max-drop", "0.3", "--out", str(tmp_path)]
    board = tmp_path / "boards" / "x86.toml"  # the first run names its board by path: same folder, same lock
    board.parent.mkdir()
    board.write_text((TARGETS_DIR / "x86.toml").read_text())
    by_path = [str(board) if a == "x86" else a for a in args]
    first = subprocess.Popen([sys.executable, "-m", "edgemb", *by_path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lock = folder / LOCK_NAME
        _wait_for(lambda: lock.exists() and f"pid {first.pid} on " in lock.read_text(), 120, "the first deploy never "
                  "locked its folder")
        # the old PASS is gone the moment the run with other settings started, long before it could finish
        assert not (folder / "report.json").exists() and not (folder / "report.html").exists()
        started = time.monotonic()
        second = edgemb(*args, timeout=120)
        assert time.monotonic() - started < 60, "the second deploy waited instead of failing at once"
        one_line_error(second, "is in use by pid")
        assert first.poll() is None, "the second deploy disturbed the first"
    finally:
        # SIGTERM, not SIGINT: torch.export turns a KeyboardInterrupt during export into an export error
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == -signal.SIGTERM, err[-2000:]  # ended by this test, not by the second deploy
    assert "Traceback" not in err and "FileNotFoundError" not in err
    assert not (folder / "report.json").exists(), "an interrupted run must not leave a report behind"


def test_stale_report_invalidation_keeps_a_report_of_the_same_settings(tmp_path):
    from edgemb.stages.deploy_guard import invalidate_stale_report

    (tmp_path / "report.json").write_text(json.dumps({"run_key": "k1", "passed": True}))
    (tmp_path / "report.html").write_text("x")
    assert not invalidate_stale_report(tmp_path, "k1") and (tmp_path / "report.json").exists()
    assert invalidate_stale_report(tmp_path, "k2")
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "report.html").exists()


def test_shared_cache_lock_makes_a_second_process_wait_with_a_message(tmp_path):
    holder = ("import sys, time; from pathlib import Path; from edgemb.locking import file_lock\n"
              "with file_lock(Path(sys.argv[1]), 'the test cache'):\n"
              "    print('locked', flush=True); time.sleep(3)\n")
    waiter = ("import sys, time; from pathlib import Path; from edgemb.locking import file_lock\n"
              "t = time.monotonic()\n"
              "with file_lock(Path(sys.argv[1]), 'the test cache'):\n"
              "    print(f'got it after {time.monotonic() - t:.1f}', flush=True)\n")
    lock = tmp_path / "cache.lock"
    first = subprocess.Popen([sys.executable, "-c", holder, str(lock)], stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "locked"
    second = subprocess.run([sys.executable, "-c", waiter, str(lock)], capture_output=True, text=True, timeout=60)
    first.wait(timeout=30)
    assert second.returncode == 0, second.stderr
    assert "waiting for the test cache: in use by pid" in second.stderr
    assert float(second.stdout.split()[-1]) >= 1.0


# --- 3: numbers that make no sense are usage errors --------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["deploy", "v1_0.25", "--target", "x86", "--runs", "-3"], "--runs must be between 1"),
    (["deploy", "v1_0.25", "--target", "x86", "--max-drop", "-1"], "--max-drop must be between 0"),
    (["deploy", "v1_0.25", "--target", "x86", "--max-drop", "nan"], "--max-drop must be between 0"),
    (["deploy", "v1_0.25", "--target", "x86", "--device-samples", "0"], "--device-samples must be between 1"),
    (["profile", "a.tflite", "--warmup", "-1"], "--warmup must be between 0"),
    (["deploy", "v1_0.25", "--target", "x86", "--tune-trials", "-5"], "--tune-trials must be between 0"),
])
def test_nonsense_numbers_exit_2_before_any_work(tmp_path, args, needle):
    one_line_error(edgemb(*args, "--out", str(tmp_path / "b"), timeout=60) if args[0] == "deploy" else
                   edgemb(*args, timeout=60), needle)
    assert not (tmp_path / "b").exists()


def test_resolution_has_an_upper_bound(tmp_path):
    result = edgemb("deploy", "v2_1.0@99968", "--target", "x86", "--out", str(tmp_path / "b"), timeout=300)
    one_line_error(result, "is above 1024")
    assert not (tmp_path / "b").exists(), "a refused deploy leaves no folder"


def test_deploy_library_call_refuses_bad_settings(tmp_path):
    from edgemb.stages.deploy import DeploySettings, deploy

    for bad in ({"runs": -3}, {"warmup": -1}, {"device_samples": 0}, {"max_drop": float("nan")}):
        with pytest.raises(EdgembError):
            deploy(DeploySettings("v1_0.25", "x86", **bad), tmp_path)
    assert not any(tmp_path.iterdir())


# --- 4: one line instead of a traceback -------------------------------------------------------------------

def run_main(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["--verbose", *args])
    return code, capsys.readouterr().err


def test_array_specs_mixed_up_or_with_negative_labels(tmp_path, capsys):
    x = np.zeros((4, 3, 64, 64), np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, -1, 2]))
    np.savez(tmp_path / "d.npz", x=x)
    one_line_error(run_main(capsys, "eval", "v1_0.25", "--weights", "ref", "--data", f"npz:{tmp_path / 'x.npy'}"),
                   "not an .npz archive")
    one_line_error(run_main(capsys, "eval", "v1_0.25", "--weights", "ref", "--data", f"npy:{tmp_path / 'd.npz'}"),
                   "use npz:")
    one_line_error(run_main(capsys, "eval", "v1_0.25", "--weights", "ref", "--data",
                            f"npy:{tmp_path / 'x.npy'}+{tmp_path / 'y.npy'}"), "label -1 at sample 2 is negative")


@pytest.mark.parametrize("uri,needle", [
    ("ssh://host:99999", "port '99999' is not a number from 1 to 65535"),
    ("ssh://host:abc", "port 'abc' is not a number"),
    ("rpc://host:9190/rpi4?timeout=abc", "timeout='abc' must be a positive number"),
])
def test_bad_device_uris(tmp_path, capsys, uri, needle):
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    one_line_error(run_main(capsys, "profile", str(artifact), "--device", uri, "--model", "v1_0.25"), needle)


def test_profile_out_a_folder_or_missing_folder_leaves_nothing(tmp_path, capsys):
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    one_line_error(run_main(capsys, "profile", str(artifact), "--model", "v1_0.25", "--out", str(tmp_path)),
                   "it is a folder")
    one_line_error(run_main(capsys, "profile", str(artifact), "--model", "v1_0.25", "--out",
                            str(tmp_path / "no" / "p.json")), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_text_file_renamed_tflite_is_one_line(tmp_path, capsys):
    artifact = tmp_path / "model.tflite"
    artifact.write_text("this is not a flatbuffer\n")
    one_line_error(run_main(capsys, "profile", str(artifact), "--model", "v1_0.25", "--weights", "ref", "--runs",
                            "1", "--data", "fashion-mnist:test:2"), "cannot load model.tflite as a .tflite artifact")


def test_weights_folder_and_unwritable_cache(tmp_path, capsys, monkeypatch):
    one_line_error(run_main(capsys, "export", "v1_0.25", "--weights", str(tmp_path), "--out", str(tmp_path / "o")),
                   "is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EDGEMB_CACHE", str(blocker / "cache"))
    one_line_error(run_main(capsys, "export", "v1_0.25", "--weights", "https://example.invalid/w.pth", "--sha256",
                            "deadbeef", "--out", str(tmp_path / "o")), "set EDGEMB_CACHE to a writable folder")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_weights_cache(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "weights").mkdir(parents=True)
    (cache / "weights").chmod(0o555)
    monkeypatch.setenv("EDGEMB_CACHE", str(cache))
    one_line_error(run_main(capsys, "export", "v1_0.25", "--weights", "https://example.invalid/w.pth", "--sha256",
                            "deadbeef", "--out", str(tmp_path / "o")), "is not writable")


# --- 5: boards outside the install ------------------------------------------------------------------------

def _board(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = (TARGETS_DIR / "rpi4.toml").read_text().replace('name = "rpi4"', f'name = "{name}"')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_target_by_path_and_from_edgemb_targets(tmp_path, monkeypatch):
    path = _board(tmp_path / "boards", "myboard")
    assert get_target(str(path)).name == "myboard" and get_target(str(path)).path == path
    assert get_target(str(path.with_suffix(""))).name == "myboard"  # /abs/path/name without .toml
    with pytest.raises(EdgembError, match="unknown target 'myboard'"):
        get_target("myboard")
    monkeypatch.setenv("EDGEMB_TARGETS", str(tmp_path / "boards"))
    assert get_target("myboard").core == "cortex-a72" and "myboard" in all_targets() and "x86" in all_targets()
    listed = edgemb("targets", "--json", env={**os.environ, "EDGEMB_TARGETS": str(tmp_path / "boards")})
    assert "myboard" in {t["name"] for t in json.loads(listed.stdout)}


def test_missing_board_file_and_bad_edgemb_targets(tmp_path, monkeypatch, capsys):
    one_line_error(run_main(capsys, "deploy", "v1_0.25", "--target", str(tmp_path / "nothere.toml"), "--out",
                            str(tmp_path / "b")), "target file")
    monkeypatch.setenv("EDGEMB_TARGETS", str(tmp_path / "missing"))
    with pytest.raises(EdgembError, match="EDGEMB_TARGETS names"):
        get_target("x86")


# --- 7: a quiet, fast first look --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], ["models"], ["targets"], ["deploy", "--help"]])
def test_listing_commands_import_no_heavy_stack(args):
    code = ("import sys; from edgemb.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'onnx', 'openvino', 'tvm', 'onnxruntime') if m in sys.modules)\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stderr, result.stderr[-1000:]


def test_shipped_model_table_matches_the_models():
    from edgemb.zoo.catalog import CATALOG, measure_table, model_table

    shipped = json.loads(CATALOG.read_text())["models"]
    assert [(r["name"], r["params"], r["macs"]) for r in model_table()] == \
        [(r["name"], r["params"], r["macs"]) for r in shipped]
    assert model_table() == measure_table(), "catalog.json is stale: run `python -m edgemb.zoo.catalog`"


def test_help_defaults_match_the_library():
    from edgemb.quant.options import QuantizeSettings
    from edgemb.stages.export import DEFAULT_OPSET

    assert cli.DEFAULT_OPSET == DEFAULT_OPSET and QuantizeSettings().max_float_layers == cli.DEFAULT_MAX_FLOAT_LAYERS


def test_library_noise_is_filtered_from_native_writes_and_children():
    code = r"""
import os, subprocess, sys
from edgemb.quiet import stderr_filtered
with stderr_filtered():
    os.write(2, b"Failed to load /x/torchao/_C_mxfp8.so: Could not load this library\n")
    os.write(2, b"W1123 08:57:33.356000 8513 torch/utils/_pytree.py:630] <enum> is an Enum subclass\n")
    os.write(2, b"I0000 00:00:1795425677.295705   20992 port.cc:153] oneDNN custom operations are on.\n")
    subprocess.run(["sh", "-c", "echo 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' >&2"])
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    print("edgemb: warning: kept", file=sys.stderr)
    os.write(2, b"progress 50%\r")
print("done", file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr == b"edgemb: warning: kept\nprogress 50%\rdone\n", result.stderr


def test_verbose_is_accepted_before_and_after_the_command():
    parser = cli.build_parser()
    assert parser.parse_args(["--verbose", "targets"]).verbose
    assert parser.parse_args(["targets", "-v"]).verbose
    assert not parser.parse_args(["targets"]).verbose


# --- 8: plots a reviewer can read -------------------------------------------------------------------------

def _report() -> dict:
    def artifact(backend, precision, drop, n, p50, spread, agreement=0.99, size=1000, samples=None):
        return {"backend": backend, "precision": precision, "status": "ok", "path": f"compile/{backend}",
                "size_bytes": size, "within_budget": drop <= 0.5,
                "parity": {"float_top1": 0.9, "quant_top1": 0.9 - drop / 100, "drop": drop, "agreement": agreement,
                           "sqnr_db": 30.0, "n": n, "where": "this host"},
                "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2, "spread_ms": spread,
                            "round_p50_ms": [p50 - spread / 2, p50 + spread / 2],
                            "samples_ms": samples or [p50 * f for f in (0.95, 1.0, 1.05)]}}

    return {"model": "v1_0.25", "target": "x86", "passed": True, "budget": {"max_drop": 0.5, "applied": "x"},
            "data": {"evaluation": {"spec": "fashion-mnist:test", "n": 10000, "labelled": True}},
            "warnings": ["calibration set (fashion-mnist:train:1) has only 1 sample"],
            "recommended": {"backend": "a", "precision": "int8", "path": "p", "reason": "r"},
            "artifacts": [artifact("a", "int8", 0.37, 10000, 0.15, 0.01), artifact("tvm", "fp32", 0.0, 1000, 32.0, 0),
                          artifact("b", "int8", 0.8, 10000, 0.2, 0.02)],
            "quantization": {"layer_sqnr": {"layers": [{"index": i, "layer": f"l{i}", "sqnr_db": v}
                                                        for i, v in enumerate((10.0, 20.0, 40.0))]}}}


def test_accuracy_plot_shows_drop_from_zero_against_the_budget_with_n():
    page = render(_report())
    plot = page[page.index("id='accuracy-plot'"):page.index("</svg>", page.index("id='accuracy-plot'"))]
    assert "top-1 drop against float (points)" in plot and "budget 0.5 pts" in plot
    assert "0.37 pts, n=10000" in plot and "0.00 pts, n=1000" in plot  # n beside every bar
    assert "within budget" in plot and "over budget" in plot  # legend
    assert "#cf222e" in plot, "the artifact over budget is drawn in the over-budget colour"


def test_latency_plot_is_log_scaled_with_legend_and_spread():
    page = render(_report())
    plot = page[page.index("id='latency-plot'"):page.index("</svg>", page.index("id='latency-plot'"))]
    assert "log scale" in plot and "one timed run" in plot and "is their spread" in plot
    xs = {}
    for name in ("a int8", "b int8", "tvm fp32"):
        at = plot.index(f">{name}<")
        xs[name] = float(plot[plot.index("stroke-width='3'", at) - 60:].split("x1='")[1].split("'")[0])
    # log axis: 0.15 and 0.2 ms stay ~29 px apart beside a 32 ms artifact (under 1 px on a linear axis)
    assert xs["b int8"] - xs["a int8"] > 20 and xs["tvm fp32"] > xs["b int8"]
    assert "&plusmn;" in page and "&#9888; calibration set" in page  # p50 cells carry the rounds' spread


def test_layer_plot_has_a_legend_for_its_colours():
    page = render(_report())
    plot = page[page.index("id='layer-plot'"):page.index("</svg>", page.index("id='layer-plot'"))]
    assert "below 15 dB" in plot and "15 to 25 dB" in plot and "25 dB and above" in plot and "SQNR dB" in plot


# --- 9: recommendation not decided by noise ---------------------------------------------------------------

def _candidate(name: str, p50: float, spread: float, agreement: float, size: int) -> dict:
    return {"backend": name, "precision": "int8", "path": name, "within_budget": True, "size_bytes": size,
            "parity": {"agreement": agreement, "sqnr_db": 30.0}, "latency": {"p50_ms": p50, "spread_ms": spread}}


def test_timing_ties_go_to_fidelity_then_size():
    from edgemb.budget import Budget

    budget = Budget()
    fast_noisy = _candidate("tflite", 0.152, 0.03, 0.985, 300)
    faithful = _candidate("onnxruntime", 0.175, 0.03, 0.992, 400)
    rec = _recommend([fast_noisy, faithful], budget, True)
    assert rec["backend"] == "onnxruntime" and rec["tied_with"] == ["tflite int8"] and "timing spread" in rec["reason"]
    small = _candidate("openvino", 0.170, 0.03, 0.992, 200)
    assert _recommend([fast_noisy, faithful, small], budget, True)["backend"] == "openvino"
    # a slower artifact whose own measurement is noisy does not win through its wide spread
    noisy_slow = _candidate("openvino", 0.442, 1.15, 1.0, 900)
    assert _recommend([_candidate("tflite", 0.117, 0.006, 0.99, 370), noisy_slow], budget, True)["backend"] == "tflite"
    # outside the spread, speed decides
    tight = [_candidate("tflite", 0.152, 0.005, 0.985, 300), _candidate("onnxruntime", 0.175, 0.005, 0.992, 400)]
    rec = _recommend(tight, budget, True)
    assert rec["backend"] == "tflite" and rec["tied_with"] == []


def test_rounds_combine_into_one_latency_with_the_spread_of_their_medians():
    def m(samples):
        ordered = sorted(samples)
        return Measurement({"logits": np.zeros(1)}, {"p50_ms": ordered[len(ordered) // 2], "p90_ms": max(samples),
                                         "p99_ms": max(samples), "runs": len(samples), "latency_ms": samples},
                           "local")

    lat = combine_rounds([m([1.0, 1.1, 1.2]), m([2.0, 2.1, 2.2]), m([1.5, 1.5, 1.6])])
    assert lat["rounds"] == 3 and lat["runs"] == 9 and lat["round_p50_ms"] == [1.1, 2.1, 1.5]
    assert lat["spread_ms"] == pytest.approx(0.4) and lat["p50_ms"] == 1.5  # MAD of 1.1, 2.1, 1.5
    # one disturbed round does not widen the spread: the case seen on a busy host
    noisy = combine_rounds([m([1.5657]), m([0.1159]), m([0.1098])])
    assert noisy["spread_ms"] == pytest.approx(0.0061)


# --- 10: tiny calibration sets are flagged ----------------------------------------------------------------

def test_small_calibration_sets_warn():
    assert calibration_warning(1, "fashion-mnist:train:1").startswith("calibration set (fashion-mnist:train:1)")
    assert calibration_warning(MIN_CALIBRATION_SAMPLES - 1) and calibration_warning(MIN_CALIBRATION_SAMPLES) is None
    assert calibration_warning(None) is None


def test_cli_warns_about_a_one_sample_calibration_set(tmp_path, capsys):
    code = cli.main(["--verbose", "quantize", "v1_0.25", "--weights", str(tmp_path / "missing.pt"), "--calib",
                     "fashion-mnist:train:1", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 2 and "edgemb: warning: calibration set (fashion-mnist:train:1) has only 1 sample" in err


def test_accuracy_plot_on_unlabelled_data_shows_the_estimated_drop_with_its_interval():
    report = _report()
    report["data"]["evaluation"]["labelled"] = False
    report["budget"] = {"max_drop": 0.5, "min_agreement": None, "applied": "estimated"}
    for a in report["artifacts"]:
        a["parity"].update(drop=None, est_drop=0.2, est_drop_low=-0.4, est_drop_high=0.9)
        a["budget_status"], a["within_budget"] = "inconclusive", False
    page = render(report)
    plot = page[page.index("id='accuracy-plot'"):page.index("</svg>", page.index("id='accuracy-plot'"))]
    assert "estimated top-1 drop against float" in plot and "budget 0.5 pts" in plot
    assert plot.count("stroke-width='1.5'") == len(report["artifacts"]), "one interval whisker per artifact"
    assert "inconclusive: interval straddles the budget" in plot
    assert "0.20 [-0.40, 0.90]" in page.replace("<span class=muted>", "").replace("</span>", "")


def test_accuracy_plot_on_unlabelled_data_shows_disagreement_on_confident_samples():
    report = _report()
    report["data"]["evaluation"]["labelled"] = False
    report["budget"] = {"max_drop": None, "min_agreement": 0.99, "applied": "agreement"}
    report["settings"] = {"max_drop": None}
    for a in report["artifacts"]:
        a["parity"].update(drop=None, agreement_confident=0.995, n_confident=150)
    page = render(report)
    plot = page[page.index("id='accuracy-plot'"):page.index("</svg>", page.index("id='accuracy-plot'"))]
    assert "disagreement with float on confident samples (%)" in plot and "budget 1 %" in plot
    assert "0.50 %, n=150 confident of 10000" in plot


def test_report_names_the_rescued_layers_and_what_the_rescue_cost_in_speed():
    report = _report()
    assert "Every layer int8" in render(report)
    report["quantization"] = {**(report.get("quantization") or {}), "layers_kept_float": ["features.18.0"],
                              "activations_16bit": ["hardtanh_2"], "layers_16bit_input": ["features.2.conv.1.0"],
                              "rescue_speed_cost": {"int8_ms": 2.5, "chosen_ms": 3.1, "float_ms": 4.5,
                                                    "added_ms": 0.6, "added_percent": 24.0,
                                                    "measured_with": "onnxruntime on this host"}}
    page = render(report)
    assert "int8 weights with 16-bit inputs: features.2.conv.1.0 (activations hardtanh_2)" in page
    assert "kept in float: features.18.0" in page
    assert "2.50 &rarr; 3.10 ms per image (+24%; float 4.50 ms)" in page
