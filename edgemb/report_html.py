"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) from report.json.

A user mails it or opens it on an air-gapped machine, so nothing is fetched: plots are drawn as SVG here.
"""

from __future__ import annotations

import html
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
.rec{background:#fff8c5} .muted{color:#667} svg text{font:11px system-ui,sans-serif;fill:#1d232b}
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


def artifact_table(report: dict[str, Any]) -> str:
    rec = report.get("recommended") or {}
    rows = []
    for a in report["artifacts"]:
        p, lat, mem = a.get("parity") or {}, a.get("latency") or {}, a.get("memory") or {}
        is_rec = (a["backend"], a["precision"]) == (rec.get("backend"), rec.get("precision"))
        note = a.get("profile_error") or a.get("detail") or a.get("profile_skipped") or ""
        rows.append(
            f"<tr class='{'rec' if is_rec else ''}'><td>{_e(_name(a))}{' &#9733;' if is_rec else ''}</td>"
            f"<td class=l>{_e(a['status'])}</td><td>{_num(a.get('size_bytes', 0) / 1e6, '.2f')}</td>"
            f"<td>{_pct(p.get('float_top1'))}</td><td>{_pct(p.get('quant_top1'))}</td>"
            f"<td>{_num(p.get('drop'), '.2f')}</td><td>{_pct(p.get('agreement'))}</td>"
            f"<td>{_num(p.get('sqnr_db'), '.1f')}</td><td>{_e(p.get('n', '-'))}</td>"
            f"<td>{_num(lat.get('p50_ms'))}</td><td>{_num(lat.get('p90_ms'))}</td><td>{_num(lat.get('p99_ms'))}</td>"
            f"<td>{_e(mem.get('arena_bytes') or '-')}</td><td>{_e(mem.get('flash_bytes') or '-')}</td>"
            f"<td class='l muted'>{_e(note[:160])}</td></tr>")
    head = ("<tr><th>artifact</th><th>status</th><th>MB</th><th>float top-1</th><th>top-1</th><th>drop (pts)</th>"
            "<th>agreement</th><th>SQNR dB</th><th>n</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>"
            "<th>arena B</th><th>flash B</th><th>note</th></tr>")
    return f"<table id='artifacts'>{head}{''.join(rows)}</table>"


def accuracy_plot(report: dict[str, Any]) -> str:
    """Horizontal bars: top-1 of each verified artifact, with the float model's top-1 as a line."""
    rows = [a for a in report["artifacts"] if (a.get("parity") or {}).get("quant_top1") is not None]
    if not rows:
        return "<p class=muted>No artifact could be verified here.</p>"
    values = [a["parity"]["quant_top1"] for a in rows]
    float_top1 = rows[0]["parity"]["float_top1"]
    low = max(0.0, min([*values, float_top1]) - 0.02)
    high = min(1.0, max([*values, float_top1]) + 0.005)
    width, left, bar = 760, 170, 22
    height = 20 + bar * len(rows) + 30

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * (width - left - 20)

    parts = [f"<svg id='accuracy-plot' width='{width}' height='{height}' role='img' "
             f"aria-label='top-1 accuracy per artifact'>"]
    for i, (a, v) in enumerate(zip(rows, values, strict=True)):
        y = 10 + i * bar
        parts.append(f"<text x='{left - 6}' y='{y + 15}' text-anchor='end'>{_e(_name(a))}</text>"
                     f"<rect x='{left}' y='{y + 3}' width='{max(1.0, x(v) - left):.1f}' height='{bar - 6}' "
                     f"fill='{COLORS[i % len(COLORS)]}'/><text x='{x(v) + 4:.1f}' y='{y + 15}'>{100 * v:.2f}%</text>")
    fx = x(float_top1)
    bottom = 10 + bar * len(rows)
    parts.append(f"<line x1='{fx:.1f}' x2='{fx:.1f}' y1='5' y2='{bottom}' stroke='#000' stroke-dasharray='4 3'/>"
                 f"<text x='{fx:.1f}' y='{bottom + 14}' text-anchor='middle'>float {100 * float_top1:.2f}%</text>"
                 f"<text x='{left}' y='{bottom + 26}'>{100 * low:.1f}%</text>"
                 f"<text x='{width - 20}' y='{bottom + 26}' text-anchor='end'>{100 * high:.1f}%</text></svg>")
    return "".join(parts)


def latency_plot(report: dict[str, Any]) -> str:
    """Every timed run as a dot, with the p50 (thick) and p90/p99 (thin) marks, per artifact."""
    rows = [a for a in report["artifacts"] if (a.get("latency") or {}).get("samples_ms")]
    if not rows:
        return "<p class=muted>No artifact was timed on a device.</p>"
    top = max(max(a["latency"]["samples_ms"]) for a in rows) * 1.05
    width, left, lane = 760, 170, 26
    height = 20 + lane * len(rows) + 30

    def x(v: float) -> float:
        return left + v / top * (width - left - 20)

    parts = [f"<svg id='latency-plot' width='{width}' height='{height}' role='img' "
             f"aria-label='latency distribution per artifact'>"]
    for i, a in enumerate(rows):
        y = 10 + i * lane + lane / 2
        color = COLORS[i % len(COLORS)]
        parts.append(f"<text x='{left - 6}' y='{y + 4}' text-anchor='end'>{_e(_name(a))}</text>")
        parts.extend(f"<circle cx='{x(v):.1f}' cy='{y}' r='2.2' fill='{color}' fill-opacity='.45'/>"
                     for v in a["latency"]["samples_ms"])
        for key, thick in (("p50_ms", 3), ("p90_ms", 1), ("p99_ms", 1)):
            px = x(a["latency"][key])
            parts.append(f"<line x1='{px:.1f}' x2='{px:.1f}' y1='{y - 9}' y2='{y + 9}' stroke='{color}' "
                         f"stroke-width='{thick}'><title>{key[:3]} {a['latency'][key]:.3f} ms</title></line>")
    bottom = 10 + lane * len(rows)
    parts.append(f"<text x='{left}' y='{bottom + 18}'>0 ms</text><text x='{width - 20}' y='{bottom + 18}' "
                 f"text-anchor='end'>{top:.2f} ms</text></svg>")
    return "".join(parts)


def layer_plot(report: dict[str, Any]) -> str:
    """SQNR of each quantized layer's output against the float model (network order); low bars break first."""
    table = ((report.get("quantization") or {}).get("layer_sqnr") or {}).get("layers") or []
    if not table:
        return "<p class=muted>No per-layer table.</p>"
    rows = sorted(table, key=lambda r: r["index"])
    finite = [min(r["sqnr_db"], 80.0) for r in rows]
    width, height, bottom, left = 1000, 220, 190, 40
    step = (width - left - 10) / len(rows)
    peak = max(max(finite), 1.0)
    parts = [f"<svg id='layer-plot' width='{width}' height='{height}' role='img' "
             f"aria-label='per-layer SQNR of the quantized model'>"]
    for i, (r, v) in enumerate(zip(rows, finite, strict=True)):
        h = max(0.0, v) / peak * (bottom - 20)
        color = "#cf222e" if v < 15 else ("#bc4c00" if v < 25 else "#0969da")
        parts.append(f"<rect x='{left + i * step:.1f}' y='{bottom - h:.1f}' width='{max(step - 1, 1):.1f}' "
                     f"height='{h:.1f}' fill='{color}'><title>#{r['index']} {_e(r['layer'])}: "
                     f"{r['sqnr_db']:.1f} dB</title></rect>")
    parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{bottom}' y2='{bottom}' stroke='#999'/>"
                 f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>0</text>"
                 f"<text x='{left - 4}' y='24' text-anchor='end'>{peak:.0f} dB</text>"
                 f"<text x='{left}' y='{bottom + 16}'>first layer</text>"
                 f"<text x='{width - 10}' y='{bottom + 16}' text-anchor='end'>last layer</text></svg>")
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
    labelled = "" if evaluation.get("labelled", True) else ", unlabelled"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>edgemb report: {_e(report['model'])} on {_e(report['target'])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(report['model'])} on {_e(report['target'])} {verdict}</h1>
<p class=muted>{_e(report.get('board', ''))}</p>
<p id="recommended">{rec_text}</p>
<p>Accuracy budget against the float PyTorch model: {_e(report.get('budget', {}).get('applied'))}, on
{_e(evaluation.get('spec'))} (n={_e(evaluation.get('n'))}{labelled}).
Weights: {_e(weights.get('spec'))} (sha256 {_e((weights.get('sha256') or '-')[:16])}).
Device: {device_text}.</p>
<h2>Artifacts</h2>{artifact_table(report)}
<h2>Accuracy per artifact</h2>{accuracy_plot(report)}
<h2>Latency distribution per artifact</h2>{latency_plot(report)}
<h2>Per-layer SQNR of the quantized model</h2>{layer_plot(report)}
<h2>Stages</h2><table id="stages"><tr><th>stage</th><th>state</th><th>seconds</th></tr>{stages}</table>
<p class=muted>Tools: {tools}</p>
</body></html>
"""


def write_html(report: dict[str, Any], path: Path) -> None:
    """Write atomically, like every other artifact."""
    ensure_writable_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(path)
