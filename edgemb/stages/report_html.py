"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) from report.json.

A user mails it or opens it on an air-gapped machine, so nothing is fetched: plots are drawn as SVG here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgemb.artifacts import ensure_writable_dir

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#1d232b}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right} th{background:#f6f8fa}
td:first-child,th:first-child,td.l{text-align:left}
.pass{background:#1a7f37;color:#fff;padding:2px 10px;border-radius:10px}
.fail{background:#cf222e;color:#fff;padding:2px 10px;border-radius:10px}
.warn{background:#fff1e5;border-left:4px solid #bc4c00;padding:6px 10px}
.rec{background:#fff8c5} .muted{color:#667} svg text{font:11px system-ui,sans-serif;fill:#1d232b}
.scroll{overflow-x:auto} td.note{max-width:22em;white-space:normal;word-break:break-word;font-size:12px}
"""
COLORS = ["#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#0a7d86", "#9a6700", "#cf222e"]


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _name(a: dict[str, Any]) -> str:
    return f"{a['backend']} {a['precision']}"


def _drop_text(p: dict[str, Any]) -> str:
    """Measured drop on labelled data, else the estimate with its 95% interval."""
    if p.get("drop") is not None:
        return _num(p["drop"], ".2f")
    if p.get("est_drop") is not None:
        return f"{p['est_drop']:.2f} <span class=muted>[{p['est_drop_low']:.2f}, {p['est_drop_high']:.2f}]</span>"
    return "-"


def _latency_text(a: dict[str, Any]) -> str:
    """Measured p50 (with its spread), else the estimate marked as such."""
    lat, est = a.get("latency") or {}, a.get("latency_estimate") or {}
    if lat.get("p50_ms") is not None:
        spread = f" <span class=muted>&plusmn;{lat['spread_ms']:.3f}</span>" if lat.get("spread_ms") else ""
        return f"{lat['p50_ms']:.3f}{spread}"
    if est:
        return f"~{est['p50_ms']:.1f} <span class=muted>estimated</span>"
    return "-"


def _task_columns(report: dict[str, Any]) -> list[tuple[str, Callable[[dict], str]]]:
    """A detector's or segmenter's own columns (its metric for float and the artifact, direct agreement with
    float); a classifier's table keeps its columns."""
    task = report.get("task") or {}
    metric, label = task.get("metric", "top1"), task.get("metric_label", "top-1")
    if metric == "top1":
        return []
    extra = {"map": ("box recall / precision", lambda p: f"{_num(p.get('box_recall'), '.3f')} / "
                                                         f"{_num(p.get('box_precision'), '.3f')}"),
             "miou": ("mask agreement", lambda p: _pct(p.get("mask_agreement")))}.get(metric)
    columns = [(f"float {label}", lambda p: _num(p.get(f"float_{metric}"), ".4f")),
               (f"{label}", lambda p: _num(p.get(f"quant_{metric}"), ".4f")),
               (f"{label} vs float", lambda p: _num(p.get(f"{metric}_vs_float"), ".4f"))]
    return columns + ([extra] if extra else [])


def artifact_table(report: dict[str, Any]) -> str:
    rec = report.get("recommended") or {}
    rows = []
    labelled = ((report.get("data") or {}).get("evaluation") or {}).get("labelled", True)
    task_columns = _task_columns(report)
    for a in report["artifacts"]:
        p, mem = a.get("parity") or {}, a.get("memory") or {}
        is_rec = (a["backend"], a["precision"]) == (rec.get("backend"), rec.get("precision"))
        note = a.get("profile_error") or a.get("detail") or a.get("profile_skipped") or ""
        memory = (f"{mem['arena_bytes'] / 1024:.0f} / {mem['flash_bytes'] / 1024:.0f}"
                  if mem.get("arena_bytes") and mem.get("flash_bytes") else "-")
        rows.append(
            f"<tr class='{'rec' if is_rec else ''}'><td>{_e(_name(a))}{' &#9733;' if is_rec else ''}</td>"
            f"<td class=l>{_e(a['status'])}</td><td>{_num(a.get('size_bytes', 0) / 1e6, '.2f')}</td>"
            + "".join(f"<td>{cell(p) if p else '-'}</td>" for _, cell in task_columns) +
            f"<td>{_drop_text(p)}</td><td>{_pct(p.get('agreement'))}</td>"
            f"<td>{_num(p.get('sqnr_db'), '.1f')}</td><td>{_e(p.get('n', '-'))}</td>"
            f"<td class=l>{_e(a.get('budget_status', '-'))}</td>"
            f"<td>{_latency_text(a)}</td><td>{_e(memory)}</td>"
            f"<td class='l muted note'>{_e(note[:200])}</td></tr>")
    drop = "drop (pts)" if labelled else "est. drop (pts) [95%]"
    if task_columns:
        label = report["task"]["metric_label"]
        drop = f"{label} drop (pts)" if labelled else f"{label} lost to float (pts)"
    task_heads = "".join(f"<th>{_e(name)}</th>" for name, _ in task_columns)
    head = (f"<tr><th>artifact</th><th>status</th><th>MB</th>{task_heads}<th>{drop}</th><th>agreement</th>"
            "<th>SQNR dB</th>"
            "<th>n</th><th>budget</th><th>p50 ms</th><th>arena / flash KiB</th><th>note</th></tr>")
    return f"<div class=scroll><table id='artifacts'>{head}{''.join(rows)}</table></div>"


PASS_COLOR, FAIL_COLOR, BUDGET_COLOR, UNSURE_COLOR = "#1a7f37", "#cf222e", "#1d232b", "#d4a72c"
BANDS = ((15.0, "#cf222e", "below 15 dB: breaks first"), (25.0, "#bc4c00", "15 to 25 dB"),
         (float("inf"), "#0969da", "25 dB and above"))


def _legend(items: list[tuple[str, str]], x: float, y: float) -> str:
    """A row of legend entries: (svg snippet drawn at the origin, label)."""
    parts, cursor = [], x
    for mark, label in items:
        parts.append(f"<g transform='translate({cursor:.1f},{y:.1f})'>{mark}"
                     f"<text x='18' y='4'>{_e(label)}</text></g>")
        cursor += 28 + 6.2 * len(label)
    return "".join(parts)


def _swatch(color: str) -> str:
    return f"<rect x='0' y='-5' width='12' height='10' fill='{color}'/>"


def _accuracy_measure(report: dict[str, Any]) -> tuple[str, str, float | None, Callable[[dict], float | None]]:
    """What the accuracy plot shows: the top-1 drop on labelled data, else disagreement with float, vs budget."""
    budget = report.get("budget") or {}
    labelled = ((report.get("data") or {}).get("evaluation") or {}).get("labelled", True)
    settings = report.get("settings") or {}
    max_drop = budget.get("max_drop", settings.get("max_drop"))
    label = (report.get("task") or {}).get("metric_label", "top-1")
    if labelled and max_drop is not None:
        return (f"{label} drop against float (points)", "pts", max_drop,
                lambda p: p.get("drop"))
    if max_drop is not None and label != "top-1":  # a decoding task without truth: no interval
        return (f"{label} points lost against the float model's own results", "pts", max_drop,
                lambda p: p.get("est_drop"))
    if max_drop is not None:
        return (f"estimated {label} drop against float (points; whiskers: 95% interval)", "pts", max_drop,
                lambda p: p.get("est_drop"))
    min_agreement = budget.get("min_agreement", settings.get("min_agreement"))

    def disagreement(p: dict) -> float | None:
        value = p.get("agreement_confident") if p.get("n_confident") else p.get("agreement")
        return None if value is None else 100 * (1 - value)

    limit = None if min_agreement is None else 100 * (1 - min_agreement)
    return "disagreement with float on confident samples (%)", "%", limit, disagreement


def accuracy_plot(report: dict[str, Any]) -> str:
    """Each verified artifact's loss against the float model, from zero, with the budget line and n per bar."""
    title, unit, limit, measure = _accuracy_measure(report)
    rows = [(a, measure(a["parity"])) for a in report["artifacts"] if a.get("parity")]
    rows = [(a, v) for a, v in rows if v is not None]
    if not rows:
        return "<p class=muted>No artifact could be verified here.</p>"
    values = [v for _, v in rows]
    values += [a["parity"][k] for a, _ in rows for k in ("est_drop_low", "est_drop_high")
               if unit == "pts" and a["parity"].get("drop") is None and a["parity"].get(k) is not None]
    low = min(0.0, *values)
    high = max(limit or 0.0, *values) * 1.15 or 1.0
    width, left, right, bar = 900, 170, 250, 24
    plot_w = width - left - right
    top = 28
    height = top + bar * len(rows) + 56

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * plot_w

    parts = [f"<svg id='accuracy-plot' width='{width}' height='{height}' role='img' aria-label='{_e(title)}'>",
             f"<text x='{left}' y='14' font-weight='600'>{_e(title)}</text>"]
    zero = x(0.0)
    for i, (a, v) in enumerate(rows):
        y = top + i * bar
        ok = a.get("within_budget", limit is None or v <= limit)
        color = PASS_COLOR if ok else UNSURE_COLOR if a.get("budget_status") == "inconclusive" else FAIL_COLOR
        start, end = sorted((zero, x(v)))
        p = a["parity"]
        where = p.get("where", "")
        parts.append(f"<text x='{left - 6}' y='{y + 16}' text-anchor='end'>{_e(_name(a))}</text>"
                     f"<rect x='{start:.1f}' y='{y + 4}' width='{max(1.5, end - start):.1f}' height='{bar - 8}' "
                     f"fill='{color}'><title>{_e(_name(a))}: {v:.2f} {unit} on n={p.get('n')}</title></rect>"
                     f"{_whisker(p, x, y + bar / 2) if unit == 'pts' and p.get('drop') is None else ''}"
                     f"<text x='{left + plot_w + 8}' y='{y + 16}'>{v:.2f} {unit}, {_n_text(p, unit)}"
                     f"{' (' + _e(where) + ')' if where else ''}</text>")
    bottom = top + bar * len(rows)
    parts.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{top}' y2='{bottom}' stroke='#999'/>"
                 f"<text x='{zero:.1f}' y='{bottom + 14}' text-anchor='middle'>0</text>"
                 f"<text x='{left + plot_w:.1f}' y='{bottom + 14}' text-anchor='end'>{high:.2f} {unit}</text>")
    legend = [(_swatch(PASS_COLOR), "within budget"), (_swatch(FAIL_COLOR), "over budget")]
    if any(a.get("budget_status") == "inconclusive" for a, _ in rows):
        legend.append((_swatch(UNSURE_COLOR), "inconclusive: interval straddles the budget"))
    if limit is not None:
        bx = x(limit)
        parts.append(f"<line x1='{bx:.1f}' x2='{bx:.1f}' y1='{top - 4}' y2='{bottom}' stroke='{BUDGET_COLOR}' "
                     f"stroke-width='2' stroke-dasharray='5 3'/>"
                     f"<text x='{bx:.1f}' y='{top - 6}' text-anchor='middle'>budget {limit:g} {unit}</text>")
        legend.append((f"<line x1='0' x2='12' y1='0' y2='0' stroke='{BUDGET_COLOR}' stroke-width='2' "
                       f"stroke-dasharray='5 3'/>", "budget"))
    parts.append(_legend(legend, left, bottom + 38) + "</svg>")
    return "".join(parts)


def _whisker(p: dict[str, Any], x: Callable[[float], float], y: float) -> str:
    """The 95% interval of an estimated drop, as a line with end caps."""
    if p.get("est_drop_low") is None:
        return ""
    a, b = x(p["est_drop_low"]), x(p["est_drop_high"])
    return (f"<line x1='{a:.1f}' x2='{b:.1f}' y1='{y:.1f}' y2='{y:.1f}' stroke='#1d232b' stroke-width='1.5'/>"
            f"<line x1='{a:.1f}' x2='{a:.1f}' y1='{y - 5:.1f}' y2='{y + 5:.1f}' stroke='#1d232b'/>"
            f"<line x1='{b:.1f}' x2='{b:.1f}' y1='{y - 5:.1f}' y2='{y + 5:.1f}' stroke='#1d232b'/>")


def _n_text(p: dict[str, Any], unit: str) -> str:
    """How many samples a bar rests on: the confident ones when disagreement was measured on those."""
    if unit == "%" and p.get("n_confident"):
        return f"n={_e(p['n_confident'])} confident of {_e(p.get('n', '-'))}"
    return f"n={_e(p.get('n', '-'))}"


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between low and high (milliseconds) for a log axis."""
    ticks, decade = [], 10 ** math.floor(math.log10(low))
    while decade <= high:
        ticks.extend(t for t in (decade, 2 * decade, 5 * decade) if low <= t <= high)
        decade *= 10
    return ticks


def latency_plot(report: dict[str, Any]) -> str:
    """Every timed run as a dot on a log axis (one slow artifact cannot squash the rest), p50 and spread marked."""
    rows = [a for a in report["artifacts"] if (a.get("latency") or {}).get("samples_ms")]
    if not rows:
        estimated = [a for a in report["artifacts"] if a.get("latency_estimate")]
        if not estimated:
            return "<p class=muted>No artifact was timed on a device.</p>"
        items = "".join(f"<li>{_e(_name(a))}: ~{a['latency_estimate']['p50_ms']:.1f} ms ESTIMATED: "
                        f"{_e(a['latency_estimate']['basis'])} (source: {_e(a['latency_estimate']['source'])})</li>"
                        for a in estimated)
        return ("<p id='latency-plot'>No artifact was timed on the board (an emulator proves numerics, never "
                f"speed). Estimates from published measurements of the board:</p><ul>{items}</ul>")
    every = [v for a in rows for v in a["latency"]["samples_ms"] if v > 0]
    low, high = min(every) / 1.15, max(every) * 1.15
    width, left, right, lane, top = 900, 170, 150, 28, 20
    plot_w = width - left - right
    height = top + lane * len(rows) + 62

    def x(v: float) -> float:
        return left + (math.log10(max(v, low)) - math.log10(low)) / (math.log10(high) - math.log10(low)) * plot_w

    parts = [f"<svg id='latency-plot' width='{width}' height='{height}' role='img' "
             f"aria-label='latency per timed run, log scale'>"]
    bottom = top + lane * len(rows)
    for t in _log_ticks(low, high):
        parts.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top}' y2='{bottom}' stroke='#eee'/>"
                     f"<text x='{x(t):.1f}' y='{bottom + 14}' text-anchor='middle'>{t:g}</text>")
    for i, a in enumerate(rows):
        lat = a["latency"]
        y = top + i * lane + lane / 2
        color = COLORS[i % len(COLORS)]
        parts.append(f"<text x='{left - 6}' y='{y + 4}' text-anchor='end'>{_e(_name(a))}</text>")
        rounds = lat.get("round_p50_ms") or []
        if len(rounds) > 1:
            band = max(2.0, x(max(rounds)) - x(min(rounds)))
            parts.append(f"<rect x='{x(min(rounds)):.1f}' y='{y - 11}' width='{band:.1f}' "
                         f"height='22' fill='{color}' fill-opacity='.15'><title>round medians "
                         f"{', '.join(f'{r:.3f}' for r in rounds)} ms</title></rect>")
        parts.extend(f"<circle cx='{x(v):.1f}' cy='{y}' r='2.2' fill='{color}' fill-opacity='.45'/>"
                     for v in lat["samples_ms"])
        for key, thick in (("p50_ms", 3), ("p90_ms", 1), ("p99_ms", 1)):
            px = x(lat[key])
            parts.append(f"<line x1='{px:.1f}' x2='{px:.1f}' y1='{y - 9}' y2='{y + 9}' stroke='{color}' "
                         f"stroke-width='{thick}'><title>{key[:3]} {lat[key]:.3f} ms</title></line>")
        spread = lat.get("spread_ms")
        text = f"p50 {lat['p50_ms']:.3f} ms" + (f" &#177; {spread:.3f}" if spread else "")  # MAD of rounds
        parts.append(f"<text x='{left + plot_w + 8}' y='{y + 4}'>{text}</text>")
    parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{bottom + 28}' text-anchor='middle'>milliseconds per "
                 f"inference (log scale)</text>")
    legend = [("<circle cx='6' cy='0' r='3' fill='#555' fill-opacity='.5'/>", "one timed run"),
              ("<line x1='6' x2='6' y1='-7' y2='7' stroke='#555' stroke-width='3'/>", "p50"),
              ("<line x1='6' x2='6' y1='-7' y2='7' stroke='#555' stroke-width='1'/>", "p90, p99"),
              ("<rect x='0' y='-6' width='12' height='12' fill='#555' fill-opacity='.15'/>",
               "range of the interleaved rounds' medians; ± is their spread")]
    parts.append(_legend(legend, left, bottom + 48) + "</svg>")
    return "".join(parts)


def rescue_summary(report: dict[str, Any]) -> str:
    """Which layers the accuracy budget raised to 16-bit inputs or kept in float, and what that cost in speed."""
    q = report.get("quantization") or {}
    raised, floated = q.get("layers_16bit_input") or [], q.get("layers_kept_float") or []
    if not raised and not floated:
        return "<p>Every layer int8 (no rescue step was needed or chosen).</p>"
    parts = []
    if raised:
        parts.append(f"int8 weights with 16-bit inputs: {_e(', '.join(raised))} "
                     f"(activations {_e(', '.join(q.get('activations_16bit') or []))})")
    if floated:
        parts.append(f"kept in float: {_e(', '.join(floated))}")
    cost = q.get("rescue_speed_cost")
    if cost:
        parts.append(f"cost: {cost['int8_ms']:.2f} &rarr; {cost['chosen_ms']:.2f} ms per image "
                     f"({cost['added_percent']:+.0f}%; float {cost['float_ms']:.2f} ms), {_e(cost['measured_with'])}")
    return "<p>Rescue chosen on held-out calibration samples: " + "; ".join(parts) + ".</p>"


def layer_plot(report: dict[str, Any]) -> str:
    """SQNR of each quantized layer's output against the float model (network order); low bars break first."""
    table = ((report.get("quantization") or {}).get("layer_sqnr") or {}).get("layers") or []
    if not table:
        return "<p class=muted>No per-layer table.</p>"
    rows = sorted(table, key=lambda r: r["index"])
    finite = [min(r["sqnr_db"], 80.0) for r in rows]
    width, height, bottom, left = 1000, 250, 190, 48
    step = (width - left - 10) / len(rows)
    peak = max(max(finite), 1.0)
    parts = [f"<svg id='layer-plot' width='{width}' height='{height}' role='img' "
             f"aria-label='per-layer SQNR of the quantized model'>"]
    for tick in range(0, int(peak) + 1, 10):
        ty = bottom - tick / peak * (bottom - 20)
        parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='#eee'/>"
                     f"<text x='{left - 4}' y='{ty + 4:.1f}' text-anchor='end'>{tick}</text>")
    for i, (r, v) in enumerate(zip(rows, finite, strict=True)):
        h = max(0.0, v) / peak * (bottom - 20)
        color = next(c for limit, c, _ in BANDS if v < limit)
        parts.append(f"<rect x='{left + i * step:.1f}' y='{bottom - h:.1f}' width='{max(step - 1, 1):.1f}' "
                     f"height='{h:.1f}' fill='{color}'><title>#{r['index']} {_e(r['layer'])}: "
                     f"{r['sqnr_db']:.1f} dB</title></rect>")
    parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{bottom}' y2='{bottom}' stroke='#999'/>"
                 f"<text x='12' y='{(bottom + 20) / 2:.0f}' transform='rotate(-90 12 {(bottom + 20) / 2:.0f})' "
                 f"text-anchor='middle'>SQNR dB</text>"
                 f"<text x='{left}' y='{bottom + 16}'>first layer</text>"
                 f"<text x='{width - 10}' y='{bottom + 16}' text-anchor='end'>last layer</text>")
    parts.append(_legend([(_swatch(c), label) for _, c, label in BANDS], left, bottom + 40) + "</svg>")
    worst = sorted(table, key=lambda r: r["sqnr_db"])[:5]
    items = "".join(f"<li>#{r['index']} {_e(r['layer'])}: {r['sqnr_db']:.1f} dB</li>" for r in worst)
    return "".join(parts) + f"<p>Worst layers:</p><ol>{items}</ol>"


def render(report: dict[str, Any]) -> str:
    rec = report.get("recommended")
    verdict = ("<span class=pass>PASSED</span>" if report["passed"] else "<span class=fail>FAILED</span>")
    rec_text = (f"Recommended: <b>{_e(rec['backend'])} {_e(rec['precision'])}</b> ({_e(rec['path'])}), "
                f"{_e(rec['reason'])}" if rec else "No artifact meets the accuracy budget.")
    device = report.get("device") or {}
    device_text = _e(device.get("uri") or "none")
    if device.get("note"):
        device_text += f" <span class=muted>({_e(device['note'])})</span>"
    data = report.get("data") or {}
    evaluation = data.get("evaluation") or {}
    stages = "".join(f"<tr><td>{_e(k)}</td><td>{'cached' if v.get('cached') else 'built'}</td>"
                     f"<td>{v['seconds']:.2f}</td></tr>" for k, v in (report.get("stages") or {}).items())
    tools = ", ".join(f"{_e(k)} {_e(v)}" for k, v in (report.get("tools") or {}).items())
    weights = report.get("weights") or {}
    warnings = "".join(f"<p class=warn>&#9888; {_e(w)}</p>" for w in report.get("warnings") or [])
    labelled = "" if evaluation.get("labelled", True) else ", unlabelled"
    task = report.get("task") or {}
    pictures = (f" Truth, float and int8 results of the first images: <a href='{_e(report['pictures'])}'>"
                f"{_e(report['pictures'])}</a>." if report.get("pictures") else "")
    post = (f" (host post-processing {task['postprocess_ms']:.2f} ms per image, not in the artifacts' latency)"
            if task.get("postprocess_ms") is not None else "")
    task_text = (f"<p id=task>Task: {_e(task['name'])}; outputs {_e(', '.join(task.get('outputs', [])))} decoded on "
                 f"the host{post}; the budget is in {_e(task['metric_label'])} points.{pictures}</p>"
                 if task.get("metric", "top1") != "top1" else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>edgemb report: {_e(report['model'])} on {_e(report['target'])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(report['model'])} on {_e(report['target'])} {verdict}</h1>
<p class=muted>{_e(report.get('board', ''))}</p>
{warnings}{task_text}<p id="recommended">{rec_text}</p>
<p>Accuracy budget against the float PyTorch model: {_e(report.get('budget', {}).get('applied'))}, on
{_e(evaluation.get('spec'))} (n={_e(evaluation.get('n'))}{labelled}).
Weights: {_e(weights.get('spec'))} (sha256 {_e((weights.get('sha256') or '-')[:16])}).
Input: {_e(_input_text(report))}. Device: {device_text}. Latency: {_e(report.get('latency_source', 'measured'))}.</p>
<h2>Artifacts</h2>{artifact_table(report)}
<h2>Accuracy against the budget</h2>{accuracy_plot(report)}
<h2>Latency per artifact</h2>{latency_plot(report)}
<h2>Per-layer SQNR of the quantized model</h2>{rescue_summary(report)}{layer_plot(report)}
<h2>Stages</h2><table id="stages"><tr><th>stage</th><th>state</th><th>seconds</th></tr>{stages}</table>
<p class=muted>Tools: {tools}</p>
</body></html>
"""


def _input_text(report: dict[str, Any]) -> str:
    inp = report.get("input") or {}
    return f"{inp.get('dtype', '?')} {'x'.join(str(d) for d in inp.get('shape', []))} {inp.get('layout', '')}".strip()


def write_html(report: dict[str, Any], path: Path) -> None:
    """Write atomically, like every other artifact."""
    ensure_writable_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(path)
