"""`edgemb deploy` / `make deploy`: stages, caching, report.json, report.html in Chromium, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgemb.stages.deploy as deploy_module
from edgemb.stages.deploy import DeploySettings, deploy

SMALL = {"eval": "fashion-mnist:test:500", "calib": "fashion-mnist:train:256", "runs": 10}
ROOT = Path(__file__).resolve().parents[1]


def make_deploy(target: str, model: str, build: Path, timeout: int, *extra: str) -> subprocess.CompletedProcess:
    """`make deploy` exactly as a user types it, with this test's venv and build folder."""
    return subprocess.run(["make", "-s", "deploy", f"TARGET={target}", f"MODEL={model}", f"VENV={sys.prefix}",
                           f"BUILD={build}", *extra], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def misses_budget(artifact: dict, settings: dict) -> list[str]:
    """Which of the budget's rules, as README states them, an artifact's own numbers break: an artifact that was not
    built and verified (or failed on its device) cannot meet it; with labels the measured drop must be at most
    --max-drop; without, an estimated-drop interval lying wholly above --max-drop misses it; the optional
    --min-agreement (on confident samples, all samples when none is confident) and --min-sqnr are floors."""
    parity = artifact.get("parity")
    if artifact["status"] not in ("ok", "needs-device") or not parity or "profile_error" in artifact:
        return ["not verified"]
    missed = []
    max_drop, min_agreement, min_sqnr = settings["max_drop"], settings.get("min_agreement"), settings.get("min_sqnr")
    if max_drop is not None:
        if parity.get("drop") is not None and parity["drop"] > max_drop:
            missed.append(f"drop {parity['drop']} > {max_drop}")
        if parity.get("drop") is None and parity.get("est_drop") is not None and parity["est_drop_low"] > max_drop:
            missed.append(f"estimated drop interval [{parity['est_drop_low']}, ...] above {max_drop}")
    if min_agreement is not None:
        agreement = parity["agreement_confident"] if parity.get("n_confident") else parity["agreement"]
        if agreement < min_agreement:
            missed.append(f"agreement {agreement} < {min_agreement}")
    if min_sqnr is not None and parity["sqnr_db"] < min_sqnr:
        missed.append(f"SQNR {parity['sqnr_db']} < {min_sqnr}")
    return missed


def check_recommendation(report: dict) -> dict:
    """The report's pick against the rules stated to users, read from the report's own numbers: with labels an
    artifact passes when its measured drop is within the budget; without, only when its whole estimated-drop
    interval lies under it (inconclusive when the interval straddles it); an artifact marked fail really misses
    the budget; the pick is the fastest passing artifact (measured, within the fastest's spread; else by the
    cited estimate; else the smallest). Returns the recommended artifact's entry."""
    max_drop = report["settings"]["max_drop"]
    for a in report["artifacts"]:
        parity = a.get("parity") or {}
        if a["budget_status"] == "pass" and max_drop is not None:
            if parity.get("drop") is not None:
                assert parity["drop"] <= max_drop, a
            elif parity.get("est_drop") is not None:
                assert parity["est_drop_high"] <= max_drop, a
        if a["budget_status"] == "pass":
            assert not misses_budget(a, report["settings"]), (misses_budget(a, report["settings"]), a)
        if a["budget_status"] == "inconclusive":
            assert parity.get("drop") is None and parity["est_drop_low"] <= max_drop < parity["est_drop_high"], a
        if a["budget_status"] == "fail":
            assert misses_budget(a, report["settings"]), f"marked fail, yet its numbers meet the budget: {a}"
    passing = [a for a in report["artifacts"] if a["budget_status"] == "pass"]
    rec = report["recommended"]
    assert rec is not None and passing, "nothing recommended"
    (chosen,) = [a for a in passing if (a["backend"], a["precision"]) == (rec["backend"], rec["precision"])]
    timed = [a for a in passing if "latency" in a]
    if timed:
        fastest = min(timed, key=lambda a: a["latency"]["p50_ms"])
        spread = fastest["latency"].get("spread_ms") or 0.0
        assert chosen["latency"]["p50_ms"] <= fastest["latency"]["p50_ms"] + spread, (chosen, fastest)
    elif any("latency_estimate" in a for a in passing):
        estimated = [a["latency_estimate"]["p50_ms"] for a in passing if "latency_estimate" in a]
        assert chosen["latency_estimate"]["p50_ms"] == min(estimated)
    else:  # nothing timed or estimated (a microcontroller without a device): the smallest
        assert chosen["size_bytes"] == min(a["size_bytes"] for a in passing)
    return chosen


@pytest.fixture(scope="module")
def x86_deploy(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    report = deploy(DeploySettings("v1_0.25", "x86", **SMALL), out, log=lambda _: None)
    return out, report


def test_report_has_every_artifact_with_parity_latency_and_hashes(x86_deploy):
    out, report = x86_deploy
    folder = out / "x86" / "v1_0.25"
    assert json.loads((folder / "report.json").read_text())["artifacts"] == report["artifacts"]
    built = {(a["backend"], a["precision"]) for a in report["artifacts"]}
    assert built == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
                     ("tflite", "fp32"), ("tflite", "int8"), ("tvm", "fp32"), ("tvm", "int8")}
    for a in report["artifacts"]:
        assert a["status"] == "ok", a
        assert (folder / a["path"]).exists() and len(a["sha256"]) == 64 and a["size_bytes"] > 0
        assert set(a["parity"]) >= {"float_top1", "quant_top1", "drop", "agreement", "sqnr_db"}
        assert a["parity"]["n"] == 500 and a["parity"]["where"] == "this host"
        lat = a["latency"]
        assert lat["runs"] == 10 and lat["device"] == "local" and lat["emulated"] is False
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert a["device_parity"]["agreement"] >= 0.95  # the runner's outputs match the host's verification
    assert report["tools"]["apache-tvm"] != "not-installed" and report["tools"]["torch"].startswith("2.13.0")
    assert report["quantization"]["layer_sqnr"]["layers"], "the per-layer SQNR table is part of the report"


def test_recommended_is_the_fastest_artifact_within_budget(x86_deploy):
    _, report = x86_deploy
    rec = report["recommended"]
    within = [a for a in report["artifacts"] if a["within_budget"]]
    assert report["passed"] and within
    assert all(a["parity"]["drop"] <= 0.5 and a["budget_status"] == "pass" for a in within)
    assert rec["latency_kind"] == "measured"
    assert (rec["backend"], rec["precision"]) in {(a["backend"], a["precision"]) for a in within}
    assert all(a["latency"]["rounds"] == 3 and len(a["latency"]["round_p50_ms"]) == 3 for a in within)
    chosen = check_recommendation(report)  # every verdict by the stated rules; the pick within the fastest's spread
    assert rec["p50_ms"] == chosen["latency"]["p50_ms"]


def test_the_recommendation_check_catches_a_wrong_verdict_or_pick():
    # check_recommendation must be able to fail: a fail verdict on numbers within the budget, a pass over it, and a
    # pick slower than the fastest passing artifact by more than that one's spread are each caught
    def report(**changes) -> dict:
        artifacts = [_artifact("a int8", 0.99, 10, latency={"p50_ms": 1.0, "spread_ms": 0.1},
                               status="ok", budget_status="pass"),
                     _artifact("b fp32", 1.0, 40, latency={"p50_ms": 1.05, "spread_ms": 0.0},
                               status="ok", budget_status="pass"),
                     _artifact("c int8", 0.9, 10, within=False, latency={"p50_ms": 0.5, "spread_ms": 0.0},
                               status="ok", budget_status="fail")]
        for a, drop in zip(artifacts, (0.3, 0.0, 1.2), strict=True):
            a["parity"].update(drop=drop, agreement_confident=None, n_confident=0)
        rec = changes.pop("recommended", {"backend": "b", "precision": "fp32"})
        for name, fields in changes.items():
            next(a for a in artifacts if a["backend"] == name).update(fields)
        return {"settings": {"max_drop": 0.5, "min_agreement": None, "min_sqnr": None}, "artifacts": artifacts,
                "recommended": rec}

    assert check_recommendation(report())["backend"] == "b"  # within a's spread: a tie the faithful fp32 may win
    for wrong in (report(c={"budget_status": "pass"}), report(a={"budget_status": "fail"}),
                  report(recommended={"backend": "x", "precision": "y"})):
        with pytest.raises((AssertionError, ValueError)):
            check_recommendation(wrong)
    slow = report()
    slow["artifacts"][1]["latency"]["p50_ms"] = 1.2
    with pytest.raises(AssertionError):
        check_recommendation(slow)


def _artifact(name: str, agreement: float, size: int, within: bool = True, **extra) -> dict:
    backend, precision = name.split()
    return {"backend": backend, "precision": precision, "path": f"compile/{name}", "size_bytes": size,
            "within_budget": within, "parity": {"agreement": agreement, "sqnr_db": 30.0}, **extra}


def test_recommendation_breaks_timing_ties_by_fidelity_and_ignores_artifacts_over_budget():
    timed = [_artifact("a fp32", 0.99, 100, latency={"p50_ms": 10.0, "spread_ms": 1.0}),
             _artifact("b int8", 1.00, 300, latency={"p50_ms": 10.8, "spread_ms": 0.1}),  # a tie: more faithful
             _artifact("c int8", 0.98, 50, latency={"p50_ms": 12.0, "spread_ms": 5.0}),  # its own spread is no tie
             _artifact("d int8", 0.50, 10, within=False, latency={"p50_ms": 2.0, "spread_ms": 0.0})]
    rec = deploy_module._recommend(timed, deploy_module.Budget(), labelled=True)
    assert (rec["backend"], rec["p50_ms"], rec["tied_with"]) == ("b", 10.8, ["a fp32"])
    assert rec["latency_kind"] == "measured"


def test_without_a_device_the_pick_is_made_on_the_cited_estimate_and_says_so():
    from edgemb.latency_estimate import estimate_latency
    from edgemb.targets import get_target

    rpi4 = get_target("rpi4")
    macs = 300_774_272
    fp32 = estimate_latency(rpi4, "tflite", "fp32", macs)
    int8 = estimate_latency(rpi4, "tflite", "int8", macs)
    assert fp32["kind"] == int8["kind"] == "estimated" and "XNNPACK" in int8["source"]
    assert int8["p50_ms"] == pytest.approx(17.0, rel=0.01) and fp32["p50_ms"] == pytest.approx(46.0, rel=0.01)
    assert estimate_latency(rpi4, "tflite", "int8", macs // 2)["p50_ms"] == pytest.approx(8.5, rel=0.01)
    assert estimate_latency(rpi4, "tvm", "int8", macs) is None, "no published figure: no estimate"
    artifacts = [_artifact("tflite fp32", 1.0, 100, latency_estimate=fp32),
                 _artifact("tflite int8", 0.97, 30, latency_estimate=int8),
                 _artifact("tvm int8", 0.99, 20)]
    rec = deploy_module._recommend(artifacts, deploy_module.Budget(), labelled=False)
    assert (rec["backend"], rec["precision"], rec["latency_kind"]) == ("tflite", "int8", "estimated")
    assert "ESTIMATED" in rec["reason"] and "XNNPACK" in rec["reason"] and "tvm int8" in rec["reason"]


def test_second_identical_run_reuses_every_stage(x86_deploy):
    out, first = x86_deploy
    folder = out / "x86" / "v1_0.25"
    markers = {p: p.stat().st_mtime_ns for p in folder.glob("*/stage.json")}
    assert len(markers) == 4
    again = deploy(DeploySettings("v1_0.25", "x86", **SMALL), out, log=lambda _: None)
    assert all(stage["cached"] for stage in again["stages"].values()), again["stages"]
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/stage.json")} == markers
    assert again["artifacts"] == first["artifacts"] and again["recommended"] == first["recommended"]


def test_changed_budget_reruns_quantize_onward_but_not_export(tmp_path):
    # one backend: the stage keys, not the number of artifacts, are under test
    deploy(DeploySettings("v1_0.25", "x86", backend="onnxruntime", **SMALL), tmp_path, log=lambda _: None)
    report = deploy(DeploySettings("v1_0.25", "x86", max_drop=0.4, backend="onnxruntime", **SMALL), tmp_path,
                    log=lambda _: None)
    cached = {name: stage["cached"] for name, stage in report["stages"].items()}
    assert cached == {"export": True, "quantize": False, "compile": False, "profile": False}


def test_interrupted_stage_leaves_no_finished_marker_and_is_redone(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        folder = args[2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.fp32.onnx").write_bytes(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy_module, "compile_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        deploy(DeploySettings("v1_0.25", "x86", backend="onnxruntime", **SMALL), tmp_path, log=lambda _: None)
    folder = tmp_path / "x86" / "v1_0.25"
    assert (folder / "quantize" / "stage.json").exists()
    assert not (folder / "compile" / "stage.json").exists() and not (folder / "report.json").exists()
    monkeypatch.undo()
    report = deploy(DeploySettings("v1_0.25", "x86", runs=3, backend="onnxruntime",
                                   **{k: v for k, v in SMALL.items() if k != "runs"}), tmp_path, log=lambda _: None)
    assert report["stages"]["compile"]["cached"] is False and report["stages"]["quantize"]["cached"] is True
    assert b"half written" not in (folder / "compile" / "model.fp32.onnx").read_bytes()


def test_report_html_renders_in_headless_chromium(x86_deploy, tmp_path):
    out, _ = x86_deploy
    page = out / "x86" / "v1_0.25" / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make setup` installs it"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    for element in ("id=\"artifacts\"", "id=\"accuracy-plot\"", "id=\"latency-plot\"", "id=\"layer-plot\"",
                    "PASSED", "Recommended"):
        assert element in dom.stdout, element
    shot = tmp_path / "report.png"
    result = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.exists(), result.stderr[-500:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    colored = np.abs(pixels.astype(int) - pixels.mean(axis=2, keepdims=True)).max(axis=2) > 40
    assert colored.sum() > 2000, "the plots' coloured bars did not render"


def test_usage_errors_exit_2_and_write_nothing(tmp_path):
    for args, message in [(["--target", "nowhere"], "unknown target"),
                          (["--target", "x86", "--max-drop", "-1"], "--max-drop must be"),
                          (["--target", "x86", "--weights", "imagenet1k_v1"],
                           "named checkpoint of v1_0.25 (named: ref)")]:
        result = subprocess.run([sys.executable, "-m", "edgemb", "deploy", "v1_0.25", *args, "--out",
                                 str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "b" / "x86").exists() or not any((tmp_path / "b" / "x86").rglob("report.json"))


@pytest.mark.slow
def test_make_deploy_x86_v2_cold_then_warm(tmp_path):
    """The main command with no WEIGHTS deploys torchvision's ImageNet MobileNetV2 at 224 on natural photos."""
    env_out = tmp_path / "build"
    cold = make_deploy("x86", "v2_1.0", env_out, 2400)
    assert cold.returncode == 0, cold.stdout[-2000:] + cold.stderr[-2000:]
    report = json.loads((env_out / "x86" / "v2_1.0" / "report.json").read_text())
    assert report["passed"] and report["weights"]["spec"] == "imagenet1k_v1"
    assert report["weights"]["sha256"] == "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
    calibration, evaluation = report["data"]["calibration"], report["data"]["evaluation"]
    assert (calibration["spec"], evaluation["spec"], evaluation["labelled"]) == ("photos:calib:300", "photos:eval",
                                                                                   False)
    assert evaluation["n"] >= 300 and not set(calibration["photos"]["photos"]) & set(evaluation["photos"]["photos"])
    assert "estimated top-1 drop <= 0.5 points" in report["budget"]["applied"]
    assert evaluation["n"] >= 1000, "photos:eval must be large enough for an estimated-drop verdict"
    by = {(a["backend"], a["precision"]): a for a in report["artifacts"]}
    for a in by.values():
        if a.get("parity"):
            assert {"agreement_confident", "n_confident", "top5_overlap", "sqnr_db", "est_drop", "est_drop_low",
                    "est_drop_high"} <= set(a["parity"])
            assert a["parity"]["est_drop_low"] <= a["parity"]["est_drop"] <= a["parity"]["est_drop_high"]
    assert by[("tflite", "int8")]["parity"]["agreement_confident"] >= 0.85, "logits range not clipped"
    check_recommendation(report)
    assert not any(stage["cached"] for stage in report["stages"].values())
    warm = make_deploy("x86", "v2_1.0", env_out, 600)
    assert warm.returncode == 0, warm.stderr[-2000:]
    again = json.loads((env_out / "x86" / "v2_1.0" / "report.json").read_text())
    assert all(stage["cached"] for stage in again["stages"].values())
    print(f"cold deploy {report['seconds']:.1f} s, warm {again['seconds']:.1f} s")


@pytest.mark.slow
def test_readme_main_command_rpi4_v2(tmp_path):
    """`make deploy TARGET=rpi4 MODEL=v2_1.0` as the README gives it (default weights: ImageNet at 224): numerics
    on the emulated board, no timing there, and the pick made on the board's cited latency estimate."""
    readme = (ROOT / "README.md").read_text()
    assert "make deploy TARGET=rpi4 MODEL=v2_1.0" in readme
    cold = make_deploy("rpi4", "v2_1.0", tmp_path, 3600)  # ~15 min alone on 2 Zen 3 cores; CI runs 2 workers
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-2000:]
    report = json.loads((tmp_path / "rpi4" / "v2_1.0" / "report.json").read_text())
    assert report["weights"]["spec"] == "imagenet1k_v1" and report["input"]["shape"] == [1, 3, 224, 224]
    assert report["device"]["uri"] == "emulated:rpi4" and report["device"]["emulated"]
    assert report["device"]["samples"] == deploy_module.EMULATED_SAMPLES
    by = {(a["backend"], a["precision"]): a for a in report["artifacts"]}
    assert not any("latency" in a for a in report["artifacts"]), "nothing may be timed on an emulator"
    for key, a in by.items():
        # every artifact on the target's list ran on the emulated board, or says why not
        assert "device_parity" in a or a.get("profile_error") or a.get("profile_skipped"), key
    for key in [("tflite", "fp32"), ("tflite", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                ("tvm", "fp32")]:
        assert by[key]["device_parity"]["n"] == deploy_module.EMULATED_SAMPLES, key
    assert by[("onnxruntime", "fp32")]["device_parity"]["agreement"] == 1.0
    assert by[("tvm", "fp32")]["parity"]["where"] == "emulated:rpi4"
    rec = report["recommended"]
    assert report["passed"] and rec["latency_kind"] == "estimated" and "ESTIMATED" in rec["reason"]
    chosen = by[(rec["backend"], rec["precision"])]
    assert chosen["latency_estimate"]["kind"] == "estimated" and "XNNPACK" in chosen["latency_estimate"]["source"]
    assert chosen["budget_status"] == "pass" and chosen["parity"]["est_drop_high"] <= 0.5
    assert check_recommendation(report) is chosen
    assert "estimated" in cold.stdout and "recommended:" in cold.stdout
    # a warm run reuses every stage: test_make_deploy_x86_v2_cold_then_warm proves it on the same code path
    print(f"cold {report['seconds']:.1f} s; recommended {rec}")


@pytest.mark.slow
def test_make_deploy_cortex_m7_v1(tmp_path):
    result = make_deploy("cortex-m7", "v1_0.25", tmp_path, 1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "cortex-m7" / "v1_0.25" / "report.json").read_text())
    (tflm,) = [a for a in report["artifacts"] if a["backend"] == "tflm"]
    assert tflm["memory"]["fits"] and tflm["memory"]["arena_bytes"] > 0 and tflm["memory"]["flash_bytes"] > 0
    assert report["recommended"]["backend"] == "tflm" and report["passed"]
    assert check_recommendation(report) is tflm


@pytest.mark.slow
def test_no_artifact_within_budget_exits_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgemb", "deploy", "v2_1.0", "--target", "cortex-m4",
                             "--weights", "ref", "--eval", "fashion-mnist:test:200", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 1, result.stdout[-1500:] + result.stderr[-1500:]
    report = json.loads((tmp_path / "cortex-m4" / "v2_1.0" / "report.json").read_text())
    assert not report["passed"] and report["recommended"] is None
    assert "no artifact meets" in result.stdout

