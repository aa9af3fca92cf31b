"""README tables rendered from the JSON the code wrote, never typed by hand (project tooling, not the library).

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers; `make readme` rewrites them
and a test fails when the README and the JSON disagree. The scripts that measure (scripts/*.py) write the
JSON under results/; this module only renders it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgemb.ethos_u import RESULTS as ETHOS_U_RESULTS
from edgemb.ethos_u import fit_cell, kib
from edgemb.zoo.weights.catalog import reference_entries

README = Path(__file__).resolve().parent.parent / "README.md"
RESULTS = README.parent / "results"
TASK_RESULTS = RESULTS / "tasks.json"  # written by scripts/task_results.py
TVM_ALL_THREADS = "tvm_tuning_all_threads.json"  # `make tvm-bench` at every core, beside the 1-thread run
TVM_TUNED = "tvm_tuning_tuned.json"  # `make tvm-tune-bench`: TVM fp32 tuned within a 10-minute budget


def reference_table() -> str:
    """Markdown table of the shipped reference models with their measured accuracy."""
    lines = ["| model | resolution | classes | top-1 (Fashion-MNIST test, n) | epochs | size | sha256 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in reference_entries("classification").items():
        acc = entry["metrics"]
        lines.append(
            f"| `{name}` | {entry['preprocessing']['resolution']} | {entry['num_classes']} | "
            f"{acc['top1']:.2%} (n={acc['n']:,}) | {entry['recipe']['epochs']} | "
            f"{entry['size_bytes'] / 1e6:.2f} MB | `{entry['sha256'][:12]}` |"
        )
    return "\n".join(lines)


def quantization_table(path: Path = RESULTS / "quantization.json") -> str:
    """Markdown table of int8 accuracy: ours next to onnxruntime's and NNCF's, on the full test set."""
    if not path.exists():
        return "_not measured yet: run `make quant-table`_"
    data = json.loads(path.read_text())
    lines = [f"Calibration `{data['calibration']}`, evaluation `{data['evaluation']}` (float = PyTorch).", "",
             "| model | tool | configuration | float top-1 | int8 top-1 | drop (points) | agreement | SQNR dB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["rows"]:
        lines.append(f"| `{r['model']}` | {r['tool']} | {r['config']} | {r['float_top1']:.2%} | "
                     f"{r['quant_top1']:.2%} | {r['drop']:.2f} | {r['agreement']:.2%} | {r['sqnr_db']:.1f} |")
    measured = {_measured_at(r.get("measured_on")) for r in data["rows"]}
    lines += ["", f"Measured at {', '.join(sorted(measured))}."]
    if data.get("imagenet"):
        lines += ["", imagenet_quantization_table(data["imagenet"])]
    return "\n".join(lines)


def imagenet_quantization_table(real: dict) -> str:
    """The real ImageNet MobileNetV2 @224 on unlabelled photo crops: every tool on one float graph, each QDQ
    model run as float (the quantizer's own fidelity) and with this host's integer kernels."""
    lines = [f"Real `{real['model']}` ({real['weights']}), calibration `{real['calibration']}`, evaluation "
             f"`{real['evaluation']}` (no labels: the drop is estimated from the float model's probabilities, with "
             "its 95% interval). Integer kernels are this host's onnxruntime ones.", "",
             "| tool | configuration | quantize s | SQNR dB, QDQ as float | SQNR dB, integer kernels | agreement | "
             "est. drop [95%] | measured at |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in real["rows"]:
        q, k = r["qdq_float"], r["integer_kernels"]
        interval = f"{k['est_drop']:.2f} [{k['est_drop_low']:.2f}, {k['est_drop_high']:.2f}]"
        lines.append(f"| {r['tool']} | {r['config']} | {r['seconds']:.0f} | {q['sqnr_db']:.1f} | {k['sqnr_db']:.1f} | "
                     f"{k['agreement']:.1%} | {interval} | {_measured_at(r.get('measured_on'))} |")
    return "\n".join(lines)


def compile_table(path: Path = RESULTS / "compile.json") -> str:
    """Markdown table of compiled artifacts per model and board, with their measured parity."""
    if not path.exists():
        return "_not measured yet: run `make compile-table`_"
    lines = ["| model | target | backend | precision | status | size | top-1 drop (points) | agreement | "
             "notes |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        if r["status"] == "not-implemented":
            continue
        p = r.get("parity", {})
        drop = f"{p['drop']:.2f} (n={p['n']:,})" if "drop" in p else "-"
        agree = f"{p['agreement']:.2%}" if p else "-"
        notes = []
        if r.get("kernel_precisions"):
            notes.append("conv kernels " + ", ".join(f"{k} {v}" for k, v in sorted(r["kernel_precisions"].items())))
        if r.get("memory"):
            m = r["memory"]
            notes.append(f"arena {m['arena_bytes'] / 1024:.0f} KiB, flash {m['flash_bytes'] / 1024:.0f} KiB")
        if r.get("reference_agreement"):
            notes.append(f"agreement with LiteRT reference kernels {r['reference_agreement']['agreement']:.2%}")
        if r.get("detail") and r["status"] != "ok":
            notes.append(re.sub(r" \([^)]{60,}\)", "", r["detail"]))  # drop long library paths
        size = f"{r['size_bytes'] / 1e6:.2f} MB" if "size_bytes" in r else "-"
        lines.append(f"| `{r['model']}` | {r['target']} | {r['backend']} | {r['precision']} | {r['status']} | "
                     f"{size} | {drop} | {agree} | {'; '.join(notes)} |")
    measured = {_measured_at(r.get("measured_on")) for r in rows}
    lines += ["", f"Measured at {', '.join(sorted(measured))}."]
    return "\n".join(lines)


def _measured_at(where: dict | None) -> str:
    """`commit, CPU (the ISA flags that pick kernels)` from a row's provenance."""
    if not where or str(where.get("commit", "")).startswith("unknown"):
        return "before provenance was recorded"
    isa = where.get("isa") or []
    kernels = [f for f in ("avx512_vnni", "avx2") if f in isa][:1]
    return f"`{where['commit']}`, {where.get('cpu')} ({', '.join(kernels) or 'no AVX2'})"


def _latency_cell(a: dict) -> str:
    """An artifact's p50 on its device, or the estimate the report gives instead (and says so)."""
    lat, est = a.get("latency"), a.get("latency_estimate")
    if lat is not None:
        return f"{lat['p50_ms']:.3f} ({lat['device']}" + (", emulated: not meaningful)" if lat["emulated"] else ")")
    if est is not None:
        return f"~{est['p50_ms']:.1f} (ESTIMATED from {est['source'].split(':')[0]})"
    return "-"


def deploy_table(path: Path = RESULTS / "deploy.json") -> str:
    """One row per `make deploy`: the recommended artifact with its parity and latency, and the verdict."""
    if not path.exists():
        return "_not measured yet: run `make deploy-table`_"
    lines = ["| command | weights | recommended | top-1 float -> artifact (n) | drop (points; est. = no labels, 95% "
             "interval) | agreement (confident) | SQNR dB "
             "| p50 ms (device) | size | artifacts within budget | result | measured at |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in json.loads(path.read_text())["reports"]:
        rec = r["recommended"]
        command = f"`make deploy TARGET={r['target']} MODEL={r['model_arg']}`"
        weights = r["weights"]["spec"]
        if rec is None:
            lines.append(f"| {command} | {weights} | none | - | - | - | - | - | - | 0 | FAILED | "
                         f"{_measured_at(r.get('measured_on'))} |")
            continue
        a = next(a for a in r["artifacts"] if (a["backend"], a["precision"]) == (rec["backend"], rec["precision"]))
        p, latency = a["parity"], _latency_cell(a)
        if a.get("memory"):
            latency = f"- (MCU; arena {a['memory']['arena_bytes'] / 1024:.0f} KiB)"
        within = sum(1 for x in r["artifacts"] if x["within_budget"])
        top1 = (f"{p['float_top1']:.2%} -> {p['quant_top1']:.2%} ({p['n']:,})" if p.get("float_top1") is not None
                 else f"unlabelled ({p['n']:,})")
        drop = f"{p['drop']:.2f}" if p.get("drop") is not None else \
            f"est. {p['est_drop']:.2f} [{p['est_drop_low']:.2f}, {p['est_drop_high']:.2f}]" \
            if p.get("est_drop") is not None else "-"
        confident = f" ({p['agreement_confident']:.2%} of {p['n_confident']})" \
            if p.get("agreement_confident") is not None else ""
        lines.append(f"| {command} | {weights} | {rec['backend']} {rec['precision']} | {top1} | {drop} | "
                     f"{p['agreement']:.2%}{confident} | {p['sqnr_db']:.1f} | {latency} | "
                     f"{a['size_bytes'] / 1e6:.2f} MB | {within} of {len(r['artifacts'])} | "
                     f"{'passed' if r['passed'] else 'FAILED'} | {_measured_at(r.get('measured_on'))} |")
    return "\n".join(lines)


def speed_ratio(speedup: float) -> str:
    """A speed-up as words that cannot mislead: 2.44 -> "2.44x faster", 0.41 -> "2.44x slower" (not "0.41x faster")."""
    if speedup >= 1.0:
        return f"{speedup:.2f}x faster"
    return f"{1.0 / speedup:.2f}x slower" if speedup > 0 else "n/a"


def bench_table(path: Path = RESULTS / "bench.json",
                tvm_path: Path = RESULTS / "tvm_tuning.json") -> str:
    """Latency ratios from `make bench` (and `make tvm-bench`), measured in one run each; details in BENCHMARKS.md."""
    lines = ["| model | weights | threads | recommended | p50 ms | vs onnxruntime fp32 | vs onnxruntime stock int8 | "
             "OpenVINO int8 vs its fp32 | our runner / benchmark_app | / compute bound |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if path.exists():
        bench = json.loads(path.read_text())
        for m in bench["models"]:
            for t, values in m["latency_p50_ms"].items():
                ours = next(v for k, v in values.items() if k.startswith("edgemb recommended"))
                lines.append(f"| `{m['model']}` | {m.get('weights', 'ref')} | {t} | {m['recommended']['backend']} "
                             f"{m['recommended']['precision']} | {ours:.3f} | "
                             f"{speed_ratio(m['speedup_vs_onnxruntime_fp32'][t])} | "
                             f"{speed_ratio(m['speedup_vs_onnxruntime_stock_int8'][t])} | "
                             f"{speed_ratio(m['openvino_int8_over_fp32'][t])} | "
                             f"{m['runner_overhead_vs_benchmark_app'][t]:.3f} | {m['ratio_to_compute_bound'][t]}x |")
        measured = sorted({_measured_at(m.get("measured_on")) for m in bench["models"]})
        lines += ["", f"Machine: {bench['machine']}. Measured at {', '.join(measured)}."]
    else:
        lines.append("| _run `make bench`_ | | | | | | | | | |")
    for tvm in (tvm_path, tvm_path.with_name(TVM_ALL_THREADS), tvm_path.with_name(TVM_TUNED)):
        if tvm.exists():
            lines += ["", tvm_table(json.loads(tvm.read_text()))]
    return "\n".join(lines)


def tvm_table(t: dict) -> str:
    """`make tvm-bench`: TVM fp32/int8 vs onnxruntime fp32/int8, one run per thread count, on the CPU it names."""
    budget = f" within {t['tune_seconds_per_library']:g} s of search" if t.get("tune_seconds_per_library") else ""
    which = ", ".join(t.get("tuned_libraries") or ("fp32", "int8"))
    reused = [f"{m['model']} {p} from {b['records_before']:,} records tuned earlier" for m in t["models"]
              for p, b in m["builds"].items() if b.get("tuned") and not b.get("tuning")]
    untuned = "no search in this run" + (f"; {', '.join(reused)}, default schedules for the rest" if reused
                                          else ", default schedules")
    tuned = (f"up to {t['trials_per_library']} MetaSchedule trials{budget} for {which}, untuned rows "
             "for the rest" if t["trials_per_library"] else untuned)
    threads = t.get("threads", 1)
    done = [b["tuning"] for m in t["models"] for b in m["builds"].values() if b.get("tuning")]
    ran = "".join(f"; {d['trials']} trials run in {d['seconds'] - d['setup_seconds']:.0f} s, "
                  f"stopped by {d['stopped_by']}" for d in done)
    command = "make tvm-tune-bench" if t.get("tuned_libraries") else "make tvm-bench"
    lines = [f"TVM (`{command}`, {tuned}{ran}; p50 ms, {threads} thread{'s' if threads > 1 else ''}):", "",
             "| model | weights | onnxruntime fp32 | onnxruntime int8 | TVM fp32 | TVM int8 | TVM fp32 / ort fp32 | "
             "TVM int8 / ort int8 | TVM int8 / TVM fp32 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in t["models"]:
        ms, r = m["latency_ms"], m["ratios"]
        best = {p: min(v for k, v in ms.items() if k.startswith(f"tvm_{p}")) for p in ("fp32", "int8")}
        cells = [f"`{m['model']}`", m["weights"], f"{ms['onnxruntime_fp32']:.2f}", f"{ms['onnxruntime_int8']:.2f}",
                 f"{best['fp32']:.2f}", f"{best['int8']:.2f}", f"{r['tvm_fp32_over_onnxruntime_fp32']}x",
                 f"{r['tvm_int8_over_onnxruntime_int8']}x", f"{r['tvm_int8_over_tvm_fp32']}x"]
        lines.append("| " + " | ".join(cells) + " |")
    kernels = sorted({f"{k['kernel']} ({k['instruction']})" for m in t["models"]
                      for k in [m["builds"]["int8"].get("integer_lowering", {}).get("dot_kernel")] if k})
    host = t["host"]
    lines += ["", f"TVM int8 dot-product kernel: {', '.join(kernels) or 'none (widening int32 path)'}. "
                  f"Host: {host['model']}, {host['cores']} cores, ISA: {', '.join(host['isa']) or 'no AVX2'}; "
                  f"TVM target {t['tvm_target'].get('mcpu', 'generic')}"
                  + (f"; load average {host['load_average_1min'][0]} -> {host['load_average_1min'][1]} during the "
                     "run (a shared host: compare ratios, not absolute times)." if "load_average_1min" in host else
                     ".")]
    return "\n".join(lines)


def _task_scores(metric: str, p: dict, side: str) -> str:
    """`mAP@[.5:.95] / mAP@0.5` or `mIoU` of the float model (side "float") or the artifact ("quant")."""
    if p.get(f"{side}_{metric}") is None:
        return "-"
    if metric == "map":
        return f"{p[f'{side}_map']:.3f} / {p[f'{side}_map50']:.3f}"
    return f"{p[f'{side}_{metric}']:.3f}"


def _task_drop(p: dict) -> str:
    """The drop in the task's points: measured on labels, or (no labels) lost against the float model."""
    if p.get("drop") is not None:
        return f"{p['drop'] + 0.0:+.2f}"
    return f"est. {p['est_drop']:.2f}" if p.get("est_drop") is not None else "-"


def _vs_float(task: str, p: dict) -> str:
    """The decoded results' direct agreement with float: boxes matched both ways, or pixels."""
    if task == "detection":
        return f"box recall {p['box_recall']:.3f}, precision {p['box_precision']:.3f}"
    return f"mask agreement {p['mask_agreement']:.4f}"


def _artifact_label(a: dict) -> str:
    """`backend precision`, with what a microcontroller artifact needs against what the board has."""
    label = f"{a['backend']} {a['precision']}"
    if a.get("memory"):
        m = a["memory"]
        label += (f", flash {m['flash_bytes'] / 1e6:.2f} MB, arena {m['arena_bytes'] / 1024:.0f} KiB, "
                  f"{'fits' if m.get('fits') else 'does not fit'}")
    return label


def task_deploy_tables(reports: list[dict]) -> str:
    """Task deploys (`make task-table`): one row per deploy with the command that made it, its recommended
    artifact and verdict; then every artifact with the task metric of float and artifact, the drop in points,
    the decoded agreement with float and the SQNR of each raw output."""
    lines = ["| command | task (metric) | data (n) | budget | recommended | float -> artifact | drop (points) | "
             "vs float | p50 ms (device) | host post-processing ms | within budget | result | measured at |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        task, data, rec = r["task"], r["data"]["evaluation"], r["recommended"]
        head = (f"| `{r['command']}` | {task['name']} ({_TASK_METRICS[task['metric']]}) | `{data['spec']}` "
                f"({data['n']:,}) | {r['budget']['applied']} | ")
        within = f"{sum(1 for a in r['artifacts'] if a.get('within_budget'))} of {len(r['artifacts'])}"
        tail = f" | {_measured_at(r.get('measured_on'))} |"
        if rec is None:
            lines.append(head + f"none | - | - | - | - | {task['postprocess_ms']:.2f} | {within} | FAILED" + tail)
            continue
        a = next(a for a in r["artifacts"] if (a["backend"], a["precision"]) == (rec["backend"], rec["precision"]))
        p = a["parity"]
        lines.append(head + f"{_artifact_label(a)} | {_task_scores(task['metric'], p, 'float')} -> "
                     f"{_task_scores(task['metric'], p, 'quant')} | {_task_drop(p)} | {_vs_float(task['name'], p)} | "
                     f"{_latency_cell(a)} | {task['postprocess_ms']:.2f} | {within} | "
                     f"{'passed' if r['passed'] else 'FAILED'}" + tail)
    lines += ["", "Every artifact of those deploys (drop: float minus artifact, in points of the first metric; SQNR of "
                  "each raw output against float):", "",
              "| model | target | artifact | float | artifact's | drop (points) | vs float | SQNR dB | "
              "p50 ms (device) | budget |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        task = r["task"]
        for a in r["artifacts"]:
            p = a.get("parity")
            cells = [f"`{r['model']}`", r["target"], _artifact_label(a)]
            if not p:  # not built or not run here
                detail = re.sub(r" \([^)]{60,}\)", "", a.get("detail") or a.get("profile_error") or "")[:80]
                lines.append("| " + " | ".join(cells) + f" | {a['status']}{': ' + detail if detail else ''} "
                             "| | | | | | |")
                continue
            sqnr = ", ".join(f"{k} {v:.1f}" for k, v in (p.get("sqnr_db_outputs") or {}).items())
            cells += [_task_scores(task["metric"], p, "float"), _task_scores(task["metric"], p, "quant"),
                      _task_drop(p), _vs_float(task["name"], p), sqnr or "-", _latency_cell(a),
                      a.get("budget_status", "-")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_TASK_METRICS = {"map": "mAP@[.5:.95] / @0.5", "miou": "mIoU"}


def task_table(path: Path = TASK_RESULTS) -> str:
    """The task deploys' tables (`make task-table`), from the deploy reports kept in results/tasks.json."""
    if not path.exists():
        return "_not measured yet: run `make task-table`_"
    return task_deploy_tables(json.loads(path.read_text())["reports"])


def task_reference_table() -> str:
    """Markdown table of the shipped detection/segmentation reference models with their measured quality."""
    entries = reference_entries("detection", "segmentation")
    if not entries:
        return "_none shipped yet: run `make reference-models MODELS=...`_"
    lines = ["| model | task | resolution | classes | quality (data, n) | epochs | train time | size | sha256 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in entries.items():
        m = entry["metrics"]
        quality = (f"mAP@[.5:.95] {m['map']:.3f}, mAP@0.5 {m['map50']:.3f}" if entry["task"] == "detection"
                   else f"mIoU {m['miou']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f}")
        lines.append(f"| `{name}` | {entry['task']} | {entry['preprocessing']['resolution']} | "
                     f"{entry['num_classes']} | {quality} (`{m['data']}`, {m['n']}) | {entry['recipe']['epochs']} | "
                     f"{entry['train_seconds'] / 60:.0f} min | {entry['size_bytes'] / 1e6:.2f} MB | "
                     f"`{entry['sha256'][:12]}` |")
    return "\n".join(lines)


def estimate_table(path: Path = RESULTS / "estimate.json") -> str:
    """The label-free estimated drop and its 95% interval beside the true drop (make estimate-table)."""
    if not path.exists():
        return "_not measured yet: run `make estimate-table`_"
    data = json.loads(path.read_text())
    cpu = data["cpu"]
    lines = [f"edgemb's default int8 (calibration `{data['calibration']}`) on `{data['evaluation']}`; commit "
             f"`{data['commit']}`, {cpu['model']} ({', '.join(cpu['isa']) or 'no x86 ISA flags'}).", "",
             "| model | n | true drop (points) | estimated drop | 95% interval (labels drawn) | contains truth | "
             "plain bootstrap of the mean | contains truth |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["rows"]:
        lines.append(f"| `{r['model']}` | {r['n']:,} | {r['true_drop']:.2f} | {r['est_drop']:.3f} | "
                     f"[{r['est_drop_low']:.2f}, {r['est_drop_high']:.2f}] | {'yes' if r['covered'] else 'NO'} | "
                     f"[{r['plain_low']:.3f}, {r['plain_high']:.3f}] | {'yes' if r['plain_covered'] else 'no'} |")
    s = data.get("synthetic")
    if s:
        lines += ["", f"Labelled synthetic set ({s['data']}, `{s['model']}`, {s['draws']} label draws): the "
                      f"interval covered the true drop in {s['coverage']:.1%} of draws, a plain bootstrap of the "
                      f"mean in {s['plain_coverage']:.1%}."]
    return "\n".join(lines)


def _board_cell(row: dict[str, Any]) -> str:
    """One model on one board: estimated ms, what it needs in each memory, and the fit."""
    if row["status"] == "failed" or "estimate" not in row:
        return fit_cell(row)
    needs = ", ".join(f"{key.removesuffix('_bytes')} {kib(value)}" for key, value in row["memory"]["needs"].items())
    split = row["npu_split"]
    cpu = f"; CPU: {', '.join(split['cpu_fallback_ops'])}" if split.get("cpu_fallback_ops") else ""
    fit = "fits" if row.get("fits") else "**does not fit**"
    return f"{row['estimate']['inference_ms']:.2f} ms; {needs} KiB; {fit}{cpu}"


def ethos_u_table(path: Path = ETHOS_U_RESULTS) -> str:
    """Vela's estimates for the small zoo models on each Ethos-U board, and whether each fits (make ethos-u-table)."""
    if not path.is_file():
        return "_not measured yet: run `make ethos-u-table`_"
    data = json.loads(path.read_text())
    boards = list(data["boards"])
    zoo = [r for r in data["rows"] if r.get("role", "zoo") == "zoo"]
    cells = {(r["model"], r["target"]): r for r in zoo}
    models = sorted({(r["model"].split("@")[0], r["resolution"], r["model"], r["macs"]) for r in zoo})
    lines = ["| model | res | MACs | " + " | ".join(boards) + " |", "| --- | --- | --- |" + " --- |" * len(boards)]
    for base, res, name, macs in models:
        row = [f"`{base}`", str(res), f"{macs / 1e6:.0f} M"]
        row += [_board_cell(cells[(name, b)]) if (name, b) in cells else "-" for b in boards]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Each cell: Vela's estimated time per inference; what the model needs in each of the board's "
                  "memories (KiB: model in flash or DRAM, TFLite Micro arena, NPU cache in SRAM); and whether that "
                  "fits the board file's memory."]
    check = [r for r in data["rows"] if r.get("role") == "check" and r["target"] == boards[0]]
    if len(check) == 2:
        untrained, trained = sorted(check, key=lambda r: r["weights"] != "imagenet1k_v1")[::-1]
        lines += ["", f"Weights check ({trained['model']} on {trained['target']}): trained ImageNet weights "
                      f"{trained['estimate']['inference_ms']:.2f} ms, {kib(trained['memory']['flash_bytes'])} KiB "
                      f"model; the same network untrained {untrained['estimate']['inference_ms']:.2f} ms, "
                      f"{kib(untrained['memory']['flash_bytes'])} KiB."]
    host = zoo[0]["measured_on"] if zoo else {}
    lines += ["", f"Made by `make ethos-u-table` with ethos-u-vela {data['vela']} at commit "
                  f"{', '.join(sorted({r['measured_on']['commit'] for r in data['rows']}))} on {host.get('cpu', '?')} "
                  f"({', '.join(host.get('isa', [])) or 'no AVX2'}); times are estimates of Vela's performance "
                  "model, not measurements."]
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {"reference-models": reference_table, "quantization": quantization_table,
                                        "compile": compile_table, "deploy": deploy_table, "benchmarks": bench_table,
                                        "task-reference-models": task_reference_table, "tasks": task_table,
                                        "estimate": estimate_table, "ethos-u": ethos_u_table}


def render(text: str) -> str:
    """Replace every known marked section of `text` with freshly rendered content."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def update_readme(path: Path = README) -> bool:
    """Rewrite the README's generated tables; True when something changed."""
    old = path.read_text()
    new = render(old)
    if new != old:
        path.write_text(new)
    return new != old
