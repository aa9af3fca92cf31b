"""Command line: thin `drive_*` shims over the library functions (the tvmc pattern).

Exit codes: 0 success, 1 a measured budget failed (parity), 2 a usage or input error (EdgembError).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from edgemb import __version__
from edgemb.errors import EdgembError, ParityError
from edgemb.limits import out_of_range
from edgemb.quant.options import (
    ACTIVATION_TYPES,
    AUTO_METHOD,
    DEFAULT_ACT_EQUALIZATION,
    DEFAULT_ACTIVATION_TYPE,
    DEFAULT_GRANULARITY,
    DEFAULT_MAX_FLOAT_LAYERS,
    DEFAULT_METHOD,
    DEFAULT_REFIT,
    DEFAULT_WEIGHT_ROUNDING,
    GRANULARITIES,
    METHODS,
    WEIGHT_ROUNDINGS,
    QuantizeSettings,
)

Driver = Callable[[argparse.Namespace], int]
# The export default shown in --help, copied here so building the parser imports no torch (tests/test_hardening.py
# pins it to edgemb.stages.export.DEFAULT_OPSET). The quantize options come from edgemb.quant.options, which is light.
DEFAULT_OPSET = 18
_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Driver]] = []

EPILOG = """\
typical use:
  edgemb deploy v2_1.0 --target x86  everything below in one step, into build/x86/v2_1.0/ (make deploy)
  edgemb models                      list the zoo with parameter and MAC counts
  edgemb models --fit corstone-300   which small models fit an Ethos-U board (Vela's estimates)
  edgemb export v2_1.0 --out build/v2    PyTorch -> ONNX -> simplified ONNX, checked in onnxruntime
  edgemb eval v2_1.0 --weights ref --data fashion-mnist:test    float accuracy of a reference model
  edgemb quantize v2_1.0 --weights ref --calib fashion-mnist:train:512 --out build/q
  edgemb verify build/q/model.int8.onnx --model v2_1.0 --weights ref --data fashion-mnist:test
  edgemb compile v2_1.0 --target rpi4 --out build/c    every artifact the board supports, each verified
  edgemb device emulate rpi4         prepare the emulated Raspberry Pi 4 (cached)
  edgemb profile build/c/model.tvm.so --device emulated:rpi4    latency on a device (ssh://, rpc:// too)
"""


def command(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register a subcommand: its name, one-line help, argument set-up and driver."""

    def register(driver: Driver) -> Driver:
        _COMMANDS.append((name, help_text, add_arguments, driver))
        return driver

    return register


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name such as v1_0.25, v2_1.0, v3l_1.0, v3s_0.75; add @R for resolution "
                                      "R (a multiple of 32), e.g. v2_1.0@160")


WEIGHTS_HELP = ("a .pt/.pth state_dict (a NAME.preprocess.toml beside it states its preprocessing), a .safetensors "
                "file, an https/file URL (with --sha256), a named checkpoint: imagenet1k_v1, imagenet1k_v2 "
                "(torchvision's; found offline in $TORCH_HOME/hub/checkpoints or an installed package), ref (our "
                "Fashion-MNIST model), or random (untrained). Default: ImageNet weights when on this machine, "
                "else ref")


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="W", help=WEIGHTS_HELP)
    parser.add_argument("--sha256", metavar="HEX", help="expected sha256 (or its first >= 8 hex digits) of --weights")


def _resolve_weights(args: argparse.Namespace) -> None:
    """Fill in the default weights (never random) and say so when it fell back to the reference model."""
    if args.weights is None:
        from edgemb.zoo import parse_model_name
        from edgemb.zoo.weights.load import default_weights

        args.weights, note = default_weights(parse_model_name(args.model))
        if note:
            print(note, file=sys.stderr)


def _budget_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    from edgemb.budget import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT

    when = f" (default {DEFAULT_MAX_DROP})" if defaults else ""
    parser.add_argument("--max-drop", type=float, metavar="POINTS", default=DEFAULT_MAX_DROP if defaults else None,
                        help="top-1 points an artifact may lose against float: measured on labelled data, estimated "
                             "from the float model's probabilities (whole 95%% interval under it) on unlabelled "
                             f"data{when}")
    parser.add_argument("--min-agreement", type=float, metavar="FRACTION",
                        default=DEFAULT_MIN_AGREEMENT if defaults else None,
                        help="also require this top-1 agreement with the float model on the samples it is "
                             "confident on (max probability >= 0.5; all samples if none)")
    parser.add_argument("--min-sqnr", type=float, metavar="DB", help="also require this logits SQNR against float")


def _budget(args: argparse.Namespace):
    """The Budget the flags ask for, or None when none was given (verify/compile then only measure)."""
    from edgemb.budget import Budget

    if args.max_drop is None and args.min_agreement is None and args.min_sqnr is None:
        return None
    return Budget(args.max_drop, args.min_agreement, args.min_sqnr)


def parity_line(p: dict) -> str:
    """Parity in one line: top-1 drop when labelled, agreement on all and on confident samples, SQNR."""
    parts = []
    if p.get("float_top1") is not None:
        parts.append(f"top-1 float {p['float_top1']:.2%} -> {p['quant_top1']:.2%} (drop {p['drop']:.2f} points)")
    if p.get("est_drop") is not None and p.get("drop") is None:
        parts.append(f"estimated drop {p['est_drop']:.2f} points [{p['est_drop_low']:.2f}, {p['est_drop_high']:.2f}]"
                     " (95% interval, no labels)")
    parts.append(f"agreement {p['agreement']:.2%}")
    if p.get("agreement_confident") is not None:
        parts[-1] += f" ({p['agreement_confident']:.2%} on {p['n_confident']} confident)"
    parts.append(f"top-5 overlap {p['top5_overlap']:.2%}, SQNR {p['sqnr_db']:.1f} dB on {p['n']} samples")
    return ", ".join(parts)


def warn_small_calibration(spec: str | None, n: int | None = None) -> bool:
    """Say on stderr when a calibration set is too small to trust (edgemb.calibration_check); True if it did."""
    from edgemb.calibration_check import calibration_warning, requested_samples

    message = calibration_warning(requested_samples(spec) if n is None else n, spec)
    if message:
        print(f"edgemb: warning: {message}", file=sys.stderr, flush=True)
    return message is not None


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--fit", metavar="TARGET", help="an Ethos-U board (e.g. corstone-300): which small zoo models "
                                                        "and resolutions fit it, with Vela's estimated time (from "
                                                        "results/ethos_u.json, made by `make ethos-u-table`)")


@command("models", "list the MobileNet zoo with parameter and MAC counts", _models_arguments)
def drive_models(args: argparse.Namespace) -> int:
    """Print every zoo entry at its default resolution with its task, measured size and cost."""
    from edgemb.zoo.catalog import model_table

    if args.fit:
        from edgemb.ethos_u import fit_lines, fit_rows

        if args.json:
            print(json.dumps(fit_rows(args.fit)[1], indent=2))
        else:
            print("\n".join(fit_lines(args.fit)))
        return 0
    rows = model_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16} {'family':<26} {'task':<14} {'alpha':>5} {'res':>4} {'params':>11} {'MACs':>9}  "
          "named weights")
    for row in rows:
        print(f"{row['name']:<16} {row['family']:<26} {row['task']:<14} {row['alpha']:>5} {row['resolution']:>4} "
              f"{row['params']:>11,} {row['macs'] / 1e6:>8.1f}M  {', '.join(row['weights']) or '-'}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    _weights_arguments(parser)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--samples", type=int, default=8,
                        help="inputs for the onnxruntime-vs-PyTorch check (default 8)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for model.onnx, model.sim.onnx, "
                                                                 "export.json")


@command("export", "export a zoo model to ONNX, simplify it and check it against PyTorch", _export_arguments)
def drive_export(args: argparse.Namespace) -> int:
    """Run the export stage and fail with exit 1 when onnxruntime disagrees with PyTorch."""
    from edgemb.stages.export import export_model
    from edgemb.zoo import parse_model_name

    _resolve_weights(args)
    result = export_model(parse_model_name(args.model), args.out, args.weights, args.sha256, args.opset, args.samples)
    parity = result.report["parity"]
    print(f"{result.report['model']}: {result.report['nodes_before']} -> {result.report['nodes_after']} nodes, "
          f"max |onnx - torch| = {parity['max_abs_diff']:.2e} on {parity['n']} inputs, "
          f"top-1 agreement {parity['top1_agreement']:.0%}")
    print(f"wrote {result.onnx_path}, {result.sim_path}, {args.out / 'export.json'}")
    if not result.passed:
        raise ParityError(f"simplified ONNX differs from PyTorch by {parity['max_abs_diff']:.2e} > "
                          f"{parity['tolerance']:.0e}")
    return 0


def _weights_command_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", action="store_true",
                        help="symlink checkpoints shipped in installed packages into $TORCH_HOME/hub/checkpoints, "
                             "where torchvision looks too (make setup does this)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")


@command("weights", "list the published checkpoints and where each loads from on this machine (offline or not)",
         _weights_command_arguments)
def drive_weights(args: argparse.Namespace) -> int:
    """Show which named weights work offline; optionally expose packaged ones in torch's cache."""
    from edgemb.zoo.weights.fetch import link_packaged_checkpoints, weights_status

    if args.link:
        for path in link_packaged_checkpoints():
            print(f"linked {path}", file=sys.stderr)
    rows = weights_status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<9} {'tag':<14} {'file':<34} where")
    for row in rows:
        print(f"{row['model']:<9} {row['tag']:<14} {row['file']:<34} {row['where']}"
              + (f" ({row['path']})" if row["path"] else ""))
    return 0


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    _weights_arguments(parser)
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="labelled data: fashion-mnist:test, fashion-mnist:train:512, imagefolder:DIR[:N], "
                             "npy:X.npy+Y.npy, npz:F.npz (see calibration/README.md)")
    parser.add_argument("--batch-size", type=int, default=250, help="images per forward pass (default 250)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


@command("eval", "measure float top-1/top-5 of a model on labelled data, with the weights' preprocessing",
         _eval_arguments)
def drive_eval(args: argparse.Namespace) -> int:
    """Print float accuracy; the number every quantized artifact is compared with."""
    from edgemb.tasks.evaluate import evaluate_model

    _resolve_weights(args)  # --batch-size was checked with every other number (edgemb.limits, in main)
    result = evaluate_model(args.model, args.weights, args.data, args.sha256, args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    top5 = f", top-5 {result['top5']:.2%}" if "top5" in result else ""
    print(f"{result['model']} on {result['data']}: top-1 {result['top1']:.2%}{top5} (n={result['n']})")
    return 0


def _quantize_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    _weights_arguments(parser)
    parser.add_argument("--calib", required=True, metavar="SPEC",
                        help="calibration data, e.g. fashion-mnist:train:512 or imagefolder:DIR:256")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.int8.onnx and quantize.json")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=[AUTO_METHOD, *METHODS],
                        help="activation ranges: observed min/max, 99.99th percentile, the clipping that "
                             f"minimises quantization MSE, or {AUTO_METHOD} (percentile or mse, whichever gives "
                             f"the better logits SQNR on calibration samples); default {DEFAULT_METHOD}")
    parser.add_argument("--weight-rounding", default=DEFAULT_WEIGHT_ROUNDING, choices=WEIGHT_ROUNDINGS,
                        help="gptq: scales and rounding that minimise each layer's output error on calibration "
                             "data, plus weight-error bias correction; nearest: plain rounding (default "
                             f"{DEFAULT_WEIGHT_ROUNDING})")
    parser.add_argument("--granularity", default=DEFAULT_GRANULARITY, choices=GRANULARITIES,
                        help=f"weight scales per output channel or one per tensor (default {DEFAULT_GRANULARITY})")
    parser.add_argument("--activation-type", default=DEFAULT_ACTIVATION_TYPE, choices=ACTIVATION_TYPES,
                        help=f"activation integer type (default {DEFAULT_ACTIVATION_TYPE}; uint8 is what x86 VNNI "
                             "kernels take)")
    parser.add_argument("--cle", action="store_true", help="cross-layer equalization before quantizing")
    parser.add_argument("--bias-correction", action="store_true", help="empirical bias correction")
    parser.add_argument("--refit", action=argparse.BooleanOptionalAction, default=DEFAULT_REFIT,
                        help="after GPTQ, refit dense layers in order to the int8 model's own inputs (least squares "
                             "to the float outputs, kept only if it raises held-out calibration SQNR; see "
                             f"edgemb/quant/refit.py; default {'on' if DEFAULT_REFIT else 'off'})")
    parser.add_argument("--act-equalization", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_ACT_EQUALIZATION,
                        help="scale quiet activation channels up into their tensor's 8-bit range, the producing and "
                             "consuming convolutions compensating (kept only if it raises held-out calibration "
                             "SQNR; see edgemb/quant/act_equalization.py; default "
                             f"{'on' if DEFAULT_ACT_EQUALIZATION else 'off'})")
    _budget_arguments(parser, defaults=False)
    parser.add_argument("--eval", metavar="SPEC", help="data to measure parity on: labelled (a top-1 drop, e.g. "
                                                       "fashion-mnist:test) or unlabelled (agreement, e.g. "
                                                       "photos:eval); a budget keeps sensitive layers in float to "
                                                       "meet it")
    parser.add_argument("--max-float-layers", type=int, default=DEFAULT_MAX_FLOAT_LAYERS,
                        help=f"most layers the budget may keep in float (default {DEFAULT_MAX_FLOAT_LAYERS})")


@command("quantize", "int8 post-training quantization (QDQ ONNX) with calibration data", _quantize_arguments)
def drive_quantize(args: argparse.Namespace) -> int:
    """Quantize; exit 1 when an accuracy budget was given and could not be met."""
    from edgemb.stages.quantize import quantize_model

    _resolve_weights(args)
    warned = warn_small_calibration(args.calib)
    settings = QuantizeSettings(method=args.method, granularity=args.granularity,
                                activation_type=args.activation_type, weight_rounding=args.weight_rounding,
                                cle=args.cle, bias_correction=args.bias_correction, refit=args.refit,
                                act_equalization=args.act_equalization, max_float_layers=args.max_float_layers)
    report = quantize_model(args.model, args.calib, args.out, args.weights, args.sha256, settings,
                            eval_spec=args.eval, budget=_budget(args))
    print(f"{report['model']}: {report['settings']['method']} {report['settings']['granularity']} int8, "
          f"calibrated on {report['calibration']['n']} samples in {report['seconds']:.0f}s -> "
          f"{args.out / 'model.int8.onnx'}")
    if "eval" in report:
        print(parity_line(report["eval"]))
    if not warned:
        warn_small_calibration(args.calib, report["calibration"]["n"])
    if report["activations_16bit"]:
        print(f"raised to 16 bits: {', '.join(report['layers_16bit_input']) or '-'} read 16-bit activations "
              f"({', '.join(report['activations_16bit'])})")
    if report["layers_kept_float"]:
        print(f"kept in float: {', '.join(report['layers_kept_float'])}")
    if report.get("budget", {}).get("speed_cost") and (report["activations_16bit"] or report["layers_kept_float"]):
        cost = report["budget"]["speed_cost"]
        print(f"rescue cost: {cost['int8_ms']:.2f} -> {cost['chosen_ms']:.2f} ms per image "
              f"({cost['added_percent']:+.0f}%; float {cost['float_ms']:.2f} ms), {cost['measured_with']}")
        if cost["chosen_ms"] >= cost["float_ms"]:
            print("edgemb: warning: the rescued model measured slower than the float model on this host: 16-bit "
                  "activations run through float kernels in onnxruntime; the float artifact (or a larger --max-drop) "
                  "is the better trade-off here", file=sys.stderr, flush=True)
    if "budget" in report and not report["budget"]["met"]:
        raise ParityError(f"budget not met: {report['budget']['verdict']}, even with "
                          f"{len(report['layers_kept_float'])} layer(s) in float")
    return 0


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("quant_model", type=Path, help="a quantized ONNX model (model.int8.onnx)")
    parser.add_argument("--model", required=True, help="the zoo model it was made from, e.g. v2_1.0")
    _weights_arguments(parser)
    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="evaluation data, labelled (fashion-mnist:test) or not (photos:eval)")
    parser.add_argument("--layer-samples", type=int, default=64, help="samples for the per-layer table (default 64)")
    _budget_arguments(parser, defaults=False)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")


@command("verify", "compare a quantized model with the float PyTorch model: accuracy, SQNR, per-layer table",
         _verify_arguments)
def drive_verify(args: argparse.Namespace) -> int:
    """Print parity metrics and the layers that lose the most signal."""
    from edgemb.stages.verify import verify_quantized

    _resolve_weights(args)
    budget = _budget(args)
    result = verify_quantized(args.quant_model, args.model, args.data, args.weights, args.sha256,
                              args.layer_samples)
    if budget is not None:
        met, verdict = budget.verdict(result)
        result["budget"] = {**budget.to_dict(), "met": met, "verdict": verdict}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{parity_line(result)}, cosine {result['cosine']:.4f}")
        print(f"worst layers (SQNR of each layer's output vs float, {result['layer_samples']} samples):")
        for row in result["layers"][:10]:
            print(f"  {row['sqnr_db']:7.2f} dB  #{row['index']:<3} {row['layer']}")
    if budget is not None and not result["budget"]["met"]:
        raise ParityError(f"budget not met: {result['budget']['verdict']}")
    return 0


def _targets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the full target descriptions as JSON")


@command("targets", "list the boards edgemb deploys to (targets/*.toml)", _targets_arguments)
def drive_targets(args: argparse.Namespace) -> int:
    """Print every target with its CPU, backends and how it is reached."""
    from edgemb.targets import all_targets

    targets = all_targets()
    if args.json:
        print(json.dumps([t.to_dict() for t in targets.values()], indent=2))
        return 0
    print(f"{'target':<12} {'kind':<12} {'core':<13} {'cores':>5}  {'backends':<36} {'precisions':<16} access")
    for t in targets.values():
        print(f"{t.name:<12} {t.kind:<12} {t.core:<13} {t.cores:>5}  {', '.join(t.backends):<36} "
              f"{', '.join(t.precisions):<16} {t.access}")
    return 0


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calib", metavar="SPEC", help="calibration data (default: the weights' own, "
                                                         "photos:calib:300 for ImageNet, fashion-mnist:train:512 "
                                                         "for ref)")
    parser.add_argument("--eval", metavar="SPEC", help="evaluation data, labelled or not (default: the weights' own, "
                                                       "photos:eval for ImageNet, fashion-mnist:test for ref)")


TUNE_SECONDS_HELP = ("wall-clock budget of the TVM tuning search per library (default 600 with --tune-trials; 0: "
                     "none); when it is spent tuning stops and keeps every record measured")


def _compile_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("--target", required=True, help="board name from targets/ (see `edgemb targets`)")
    parser.add_argument("--backend", help="build only this backend (default: every one the target supports)")
    _weights_arguments(parser)
    _data_arguments(parser)
    _budget_arguments(parser, defaults=False)
    parser.add_argument("--tune-trials", type=int, default=0, metavar="N",
                        help="TVM MetaSchedule candidates to measure on this host (default 0: use the cached "
                             "tuning database when there is one; 1000+ for a real deploy)")
    parser.add_argument("--tune-seconds", type=float, metavar="S", help=TUNE_SECONDS_HELP)
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifacts and compile.json")


@command("compile", "build the artifacts a target supports and check each against the float model",
         _compile_arguments)
def drive_compile(args: argparse.Namespace) -> int:
    """Print one line per artifact: status, size and parity."""
    from edgemb.backends.base import needs_qdq_model
    from edgemb.data import as_data
    from edgemb.stages.compile import compile_model, default_data, plan
    from edgemb.stages.quantize import quantize_model
    from edgemb.targets import get_target
    from edgemb.zoo.prepared import prepare_model

    _resolve_weights(args)
    warn_small_calibration(args.calib)
    budget = _budget(args)
    target = get_target(args.target)
    pairs = plan(target, args.backend)  # an unsupported request fails here, before any work
    prepared = prepare_model(args.model, args.weights, args.sha256)
    calib, eval_spec = default_data(prepared, args.calib, args.eval)
    calibration, evaluation = as_data(calib, prepared.preprocessing), as_data(eval_spec, prepared.preprocessing)
    qdq_model = None
    if needs_qdq_model(pairs):  # onnxruntime/TVM int8 is the quantize stage's model, as in a deploy
        quantize_model(prepared, calibration, args.out / "quantize", eval_spec=evaluation, budget=budget,
                       isa=target.isa, arch=target.arch)
        qdq_model = args.out / "quantize" / "model.int8.onnx"
    report = compile_model(prepared, target, args.out, args.backend, calib=calibration, eval_spec=evaluation,
                           tune_trials=args.tune_trials, tune_seconds=args.tune_seconds, qdq_model=qdq_model,
                           budget=budget)
    for a in report["artifacts"]:
        line = f"{a['backend']:<12} {a['precision']:<5} {a['status']:<20}"
        if "size_bytes" in a:
            line += f" {a['size_bytes'] / 1e6:7.2f} MB"
        if "parity" in a:
            line += f"  {parity_line(a['parity'])}"
        if a.get("detail"):
            line += f"  {a['detail']}"
        print(line)
    print(f"wrote {args.out / 'compile.json'}")
    missed = [f"{a['backend']} {a['precision']} ({a['budget_verdict']})" for a in report["artifacts"]
              if a.get("within_budget") is False]
    if missed:
        raise ParityError(f"{len(missed)} artifact(s) miss the budget: {'; '.join(missed)}")
    return 0


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help="a .tflite, OpenVINO .xml, TVM .so or .onnx artifact")
    parser.add_argument("--device", default="local", metavar="URI",
                        help="local (default), emulated:rpi4, ssh://user@host[:port][?identity=KEY&python=PY] or "
                             "rpc://TRACKER_HOST:PORT/KEY (TVM libraries)")
    parser.add_argument("--model", help="zoo name the artifact was built from (default: read from the "
                                        "compile.json/report.json beside it)")
    parser.add_argument("--weights", metavar="W", help="weights whose preprocessing feeds the inputs")
    parser.add_argument("--data", metavar="SPEC",
                        help="input samples (default: the first 16 of the weights' own evaluation data)")
    parser.add_argument("--runs", type=int, default=50, help="timed inferences (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed inferences first (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (default 0: the runtime's own)")
    parser.add_argument("--out", type=Path, help="write the latency JSON here (default: profile.json beside the "
                                                 "artifact)")


@command("profile", "time an artifact on a device: this host, the emulated board, SSH or a TVM RPC tracker",
         _profile_arguments)
def drive_profile(args: argparse.Namespace) -> int:
    """Print the latency table and write it as JSON."""
    from edgemb.stages.profile import profile_artifact

    out = args.out or args.artifact.parent / f"profile.{args.artifact.name}.json"
    report = profile_artifact(args.artifact, args.device, args.model, args.weights, args.data, args.runs,
                              args.warmup, args.threads, out)
    lat = report["latency"]
    if lat is None:
        print(f"{args.artifact.name}: ran {report['samples']} samples on {report['device']}; {report['note']}")
        print(f"wrote {out}")
        return 0
    note = ""
    print(f"{'artifact':<28} {'device':<32} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'runs':>5}")
    print(f"{args.artifact.name:<28} {lat['device']:<32} {lat['p50_ms']:>9.3f} {lat['p90_ms']:>9.3f} "
          f"{lat['p99_ms']:>9.3f} {lat['runs']:>5}{note}")
    print(f"wrote {out}")
    return 0


def _device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["emulate", "serve"],
                        help="emulate: prepare (once) the emulated board; serve: also run a TVM RPC server on it, "
                             "registered with --tracker (runs until interrupted)")
    parser.add_argument("board", help="an aarch64 target such as rpi4")
    parser.add_argument("--tracker", metavar="HOST:PORT", help="serve: the TVM RPC tracker to register with")
    parser.add_argument("--key", help="serve: the device key (default: BOARD-emulated)")
    parser.add_argument("--port", type=int, default=9095, help="serve: first port to listen on (default 9095)")


@command("device", "prepare an emulated ARM board (arm64 Debian under qemu-user, cached)", _device_arguments)
def drive_device(args: argparse.Namespace) -> int:
    """Build or reuse the emulated board and print how it runs programs."""
    from edgemb.device.emulate import prepare_board

    board = prepare_board(args.board, log=lambda message: print(message, flush=True))
    ready = json.loads((board.site_packages.parent / "ready.json").read_text())
    versions = ", ".join(f"{k} {v}" for k, v in ready["versions"].items())
    print(f"{args.board}: emulated {board.qemu_cpu} board at {board.rootfs} ({versions})")
    print(f"device URI: emulated:{args.board}")
    if args.action == "serve":
        import subprocess

        if not args.tracker:
            raise EdgembError("`edgemb device serve` needs --tracker HOST:PORT")
        key = args.key or f"{args.board}-emulated"
        print(f"serving key {key!r} to tracker {args.tracker} (Ctrl-C stops)", flush=True)
        command = board.rpc_server_command(args.tracker, key, args.port)
        return subprocess.run(command, env=board.environment()).returncode
    return 0


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("--target", required=True, help="board name from targets/ (see `edgemb targets`)")
    _weights_arguments(parser)
    _data_arguments(parser)
    parser.add_argument("--device", metavar="URI", help="where to time the artifacts: local (x86 default), "
                                                        "emulated:BOARD (ARM default), ssh://user@host, "
                                                        "rpc://tracker:port/key")
    _budget_arguments(parser, defaults=True)
    parser.add_argument("--tune-trials", type=int, default=0, metavar="N", help="TVM tuning candidates (default 0)")
    parser.add_argument("--tune-seconds", type=float, metavar="S", help=TUNE_SECONDS_HELP)
    parser.add_argument("--runs", type=int, help="timed inferences per artifact on a real device (default 50; an "
                                                 "emulated board is never timed)")
    parser.add_argument("--device-samples", type=int,
                        help="eval samples whose device outputs are checked (default 64 here, 200 on a board, 16 "
                             "on an emulated board)")
    _deploy_backend_and_out(parser)
    parser.set_defaults(numbers_are_deploy_settings=True)


BACKEND_HELP = ("build only this backend's artifacts, NAME (all its precisions) or NAME:PRECISION, e.g. onnxruntime or "
                "onnxruntime:int8; repeatable (default: every backend and precision the target supports)")


def _deploy_backend_and_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", metavar="NAME[:PRECISION]", help=BACKEND_HELP)
    parser.add_argument("--out", type=Path, default=Path("build"), help="root folder (default build/): the "
                                                                        "deploy goes to OUT/TARGET/MODEL")


@command("deploy", "export, quantize, compile, verify and time every artifact for a board; write the report",
         _deploy_arguments)
def drive_deploy(args: argparse.Namespace) -> int:
    """Exit 0 when an artifact meets the accuracy budget, 1 when none does."""
    from dataclasses import replace

    from edgemb.stages.deploy import DeploySettings, deploy

    settings = DeploySettings(args.model, args.target, args.weights, args.sha256, args.calib, args.eval, args.device,
                              args.max_drop, args.min_agreement, args.min_sqnr, args.tune_trials, args.runs,
                              device_samples=args.device_samples,
                              backend=",".join(args.backend) if args.backend else None)
    if getattr(args, "tune_seconds", None) is not None:  # task-verify (deploy with other defaults) has no such flag
        settings = replace(settings, tune_seconds=args.tune_seconds)
    warned = warn_small_calibration(args.calib)
    report = deploy(settings, args.out, log=lambda message: print(message, flush=True))
    for message in [] if warned else report.get("warnings", []):
        print(f"edgemb: warning: {message}", file=sys.stderr)
    labelled = report["data"]["evaluation"].get("labelled")
    drop_head = "drop" if labelled else "est. drop [95% interval]"
    task = report.get("task") or {}
    if task.get("metric", "top1") != "top1":  # a detector's or segmenter's drop is in its metric's points
        drop_head = f"{task['metric_label']} drop" if labelled else f"{task['metric_label']} lost to float"
    print(f"{'artifact':<18} {'status':<13} {drop_head:>24} {'agree':>7} {'conf.':>7} {'SQNR':>6} "
          f"{'p50 ms':>10}  budget / device")
    for a in report["artifacts"]:
        p = a.get("parity") or {}
        if p.get("drop") is not None:
            drop = f"{p['drop']:.2f}"
        elif p.get("est_drop") is not None:
            drop = f"{p['est_drop']:.2f} [{p['est_drop_low']:.2f}, {p['est_drop_high']:.2f}]"
        else:
            drop = "-"
        agree = f"{p['agreement']:.2%}" if p.get("agreement") is not None else "-"
        confident = f"{p['agreement_confident']:.2%}" if p.get("agreement_confident") is not None else "-"
        sqnr = f"{p['sqnr_db']:.1f}" if p.get("sqnr_db") is not None else "-"
        if a.get("latency"):
            p50 = f"{a['latency']['p50_ms']:.3f}"
        elif a.get("latency_estimate"):
            p50 = f"~{a['latency_estimate']['p50_ms']:.1f} est"
        else:
            p50 = "-"
        where = a.get("profile_error", a.get("profile_skipped", ""))[:60]
        print(f"{a['backend'] + ' ' + a['precision']:<18} {a['status']:<13} {drop:>24} {agree:>7} {confident:>7} "
              f"{sqnr:>6} {p50:>10}  {a.get('budget_status', '-')}{'; ' + where if where else ''}")
    print(f"latency: {report.get('latency_source', 'measured')}; device: {report['device']['uri']}"
          f"{' (' + report['device']['note'] + ')' if report['device'].get('note') else ''}")
    if report.get("inconclusive"):
        print(f"inconclusive (more evaluation data needed to decide): {', '.join(report['inconclusive'])}")
    folder = Path(report["folder"])
    rec = report["recommended"]
    if rec is None:
        print(f"no artifact meets the budget ({report['budget']['applied']}); see {folder / 'report.html'}")
        return 1
    print(f"recommended: {rec['backend']} {rec['precision']} -> {folder / rec['path']} ({rec['reason']})")
    print(f"report: {folder / 'report.json'}, {folder / 'report.html'} ({report['seconds']:.1f} s)")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="reference models to train (default: all of them, the `ref` weights in `edgemb models`: "
                             "classifiers on Fashion-MNIST, detectors and segmenters on synthdet)")


@command("train-reference", "retrain the shipped reference models (classifiers, detectors, segmenters) from their "
         "recipes", _train_arguments)
def drive_train_reference(args: argparse.Namespace) -> int:
    """Reproduce the reference checkpoints (minutes to hours per model on 2 cores; the long recipes resume from
    their newest checkpoint) and update their manifest."""
    from edgemb.training import train_all

    for entry in train_all(args.models or None):
        metrics = entry["metrics"]
        scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{entry['model']} ({entry['task']}): {scores} on {metrics['data']} (n={metrics['n']}), "
              f"{entry['size_bytes'] / 1e6:.1f} MB, sha256 {entry['sha256'][:16]}")
    return 0


def _task_verify_arguments(parser: argparse.ArgumentParser) -> None:
    from edgemb.budget import DEFAULT_MAX_DROP

    _model_argument(parser)
    _weights_arguments(parser)
    parser.add_argument("--data", dest="eval", default="synthdet:test:200", metavar="SPEC",
                        help="evaluation images (deploy's --eval); synthdet:test[:N] has ground truth (default "
                             "synthdet:test:200)")
    parser.add_argument("--calib", default="synthdet:train:256", metavar="SPEC",
                        help="calibration images (default synthdet:train:256)")
    parser.add_argument("--target", default="x86", help="board whose artifacts are built (default x86)")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="POINTS",
                        help="largest mAP (detection) or mIoU (segmentation) drop in points an artifact may have "
                             f"(default {DEFAULT_MAX_DROP}); exit 1 when no artifact is within it")
    _deploy_backend_and_out(parser)
    parser.set_defaults(numbers_are_deploy_settings=True)


@command("task-verify", "deploy with a detector's/segmenter's defaults (synthdet data, x86): every artifact's "
         "decoded boxes/masks against float (mAP, mIoU, agreement) in OUT/TARGET/MODEL/report.json",
         _task_verify_arguments)
def drive_task_verify(args: argparse.Namespace) -> int:
    """An alias of `edgemb deploy`: the same pipeline, stage cache, report.json/html and pictures.html."""
    from edgemb.budget import DEFAULT_MIN_AGREEMENT

    for name, value in (("device", None), ("min_agreement", DEFAULT_MIN_AGREEMENT), ("min_sqnr", None),
                        ("tune_trials", 0), ("runs", None), ("device_samples", None)):
        setattr(args, name, value)
    return drive_deploy(args)


VERBOSE_HELP = "also show library log lines and warnings (torch, TFLite, TVM, ...); EDGEMB_VERBOSE=1 does the same"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="edgemb", description="Deploy MobileNets to edge boards and microcontrollers, with proof of parity.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgemb {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, add_arguments, driver in _COMMANDS:
        child = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(child)
        child.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        child.set_defaults(driver=driver)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgemb` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "driver", None):
        parser.print_help()
        return 2
    # every numeric option, before any work starts; deploy's (and task-verify's) options are all settings of the
    # deploy, which checks them itself (edgemb.stages.deploy_guard.check_settings): one check, one message
    problem = None if getattr(args, "numbers_are_deploy_settings", False) else out_of_range(vars(args))
    if problem:
        print(f"edgemb {args.command}: error: {problem}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as quiet:
        if not (args.verbose or os.environ.get("EDGEMB_VERBOSE") == "1"):
            _quiet_libraries(quiet)
        return _run(args)


def _quiet_libraries(stack: contextlib.ExitStack) -> None:
    """Keep the console to edgemb's own lines: library warnings and native log noise are dropped."""
    from edgemb.progress import show_progress
    from edgemb.quiet import stderr_filtered

    os.environ.setdefault("EDGEMB_PROGRESS", "1" if show_progress() else "0")  # decided before fd 2 is a pipe
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # absl/TensorFlow info and warnings in converters
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", module=r"^(?!edgemb)")  # other packages' warnings; edgemb's own stay
    stack.enter_context(stderr_filtered())


def _run(args: argparse.Namespace) -> int:
    """Call the driver and map what it raises to an exit code and one line."""
    try:
        return args.driver(args)
    except EdgembError as exc:
        print(f"edgemb: error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"edgemb: parity failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgemb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgemb models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
