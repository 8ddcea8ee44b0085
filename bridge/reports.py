"""Parity reports for people and CI: JUnit XML, Markdown, a per-module plot and one HTML page.

Every function takes the dict that is written as JSON: either a full
``bridge convert`` report (``report.json``, the parity part under
``"parity"``) or a ``bridge check`` report (the parity part is the whole
document). They are pure: nothing here keeps state between calls, and
matplotlib is imported only when a plot is made (through
``matplotlib.figure.Figure``, so pyplot and the global backend are left alone).
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
import xml.etree.ElementTree as ET
from pathlib import Path

LOG_FLOOR = 1e-12  # errors below this are drawn at this value on the log axis
_RUNTIME_COLORS = {"tf": "#1f77b4", "savedmodel": "#9467bd", "tfjs-cpu": "#ff7f0e", "tfjs-wasm": "#2ca02c"}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&])")
DEFAULT_NAMES = {"junit": "parity.xml", "markdown": "parity.md", "html": "parity.html", "plot": "parity.png"}


# -- reading the report ---------------------------------------------------------------------------

def parity_part(report: dict) -> dict:
    """The parity dict: ``report["parity"]`` for convert reports, the report itself for check reports."""
    return report["parity"] if isinstance(report.get("parity"), dict) else report


def module_runtimes(report: dict) -> dict[str, list[dict]]:
    """Per-module diffs by runtime, ``tf`` first; ``{"tf": per_module}`` for reports without
    ``per_module_runtimes``."""
    parity = parity_part(report)
    out = {"tf": list(parity.get("per_module") or [])}
    for name, diffs in (parity.get("per_module_runtimes") or {}).items():
        out[name] = list(diffs or [])
    return {k: v for k, v in out.items() if v or k == "tf"}


def tolerance_reasons(report: dict) -> tuple[float | None, list[str]]:
    """(rtol, reasons) from ``parity["tolerance"]``; accepts ``reasons: [..]`` or a single ``reason``."""
    tol = parity_part(report).get("tolerance") or {}
    reasons = tol.get("reasons")
    if reasons is None:
        reasons = [tol["reason"]] if tol.get("reason") else []
    return tol.get("rtol"), [str(r) for r in reasons]


def fmt(x) -> str:
    """A number with 3 significant digits; ``-`` for missing values."""
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return str(x)
    return f"{float(x):.3g}"


def _output_names(parity: dict) -> list[str]:
    names: list[str] = []
    for r in parity.get("runtimes") or []:
        names += [o["name"] for o in r.get("outputs") or [] if o["name"] not in names]
    return names


def _runtime_rows(report: dict) -> list[tuple[str, dict, str | None]]:
    """(runtime, output diff, skip reason or None), one per (runtime, output). A skipped runtime gets
    the output names the other runtimes compared (else the report's outputs), with only a name."""
    parity = parity_part(report)
    fallback = _output_names(parity) or [str(n) for n in report.get("outputs") or []] or ["*"]
    rows = []
    for r in parity.get("runtimes") or []:
        if r.get("skipped"):
            rows += [(r["runtime"], {"name": n}, r["skipped"]) for n in fallback]
        elif r.get("outputs"):
            rows += [(r["runtime"], o, None) for o in r["outputs"]]
        else:  # ran but compared nothing: a failure unless the runtime says ok
            rows.append((r["runtime"], {"name": "*", "ok": bool(r.get("ok")),
                                        "problem": None if r.get("ok") else "no outputs were compared"}, None))
    return rows


def _diff_text(d: dict) -> str:
    text = f"max abs error {fmt(d.get('max_abs_error'))} vs bound {fmt(d.get('bound'))}"
    text += f" (max rel error {fmt(d.get('max_rel_error'))})"
    return text + (f"; {d['problem']}" if d.get("problem") else "")


# -- JUnit XML -------------------------------------------------------------------------------------

def _xml(s) -> str:
    return _XML_INVALID.sub("?", str(s))


def _testcase(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=_xml(classname), name=_xml(name), time="0")


def _failure(case: ET.Element, d: dict, first: str | None) -> None:
    lines = [_diff_text(d), f"shape {d.get('shape')}"]
    if first:
        lines.append(f"first diverging module: {first}")
    el = ET.SubElement(case, "failure", message=_xml(lines[0]), type="parity")
    el.text = _xml("\n".join(lines))


def junit_tree(report: dict) -> ET.ElementTree:
    """The JUnit document: suite ``bridge.parity``, a case per (runtime, output) and per TF module."""
    parity = parity_part(report)
    first = parity.get("first_divergence")
    suite = ET.Element("testsuite", name="bridge.parity")
    props = ET.SubElement(suite, "properties")
    for key in ("model", "bridge_version"):
        if report.get(key) is not None:
            ET.SubElement(props, "property", name=key, value=_xml(report[key]))
    ET.SubElement(props, "property", name="first_divergence", value=_xml(first or ""))
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    for runtime, d, skipped in _runtime_rows(report):
        case = _testcase(suite, f"runtimes.{runtime}", f"{runtime}::{d['name']}")
        if skipped:
            ET.SubElement(case, "skipped", message=_xml(skipped))
        elif not d.get("ok"):
            _failure(case, d, first)
        counts["tests"] += 1
        counts["skipped"] += bool(skipped)
        counts["failures"] += bool(not skipped and not d.get("ok"))
    for d in parity.get("per_module") or []:
        case = _testcase(suite, "modules.tf", d["name"])
        if not d.get("ok"):
            _failure(case, d, first)
        counts["tests"] += 1
        counts["failures"] += not d.get("ok")
    suite.set("errors", "0")
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="bridge", errors="0", **{k: str(v) for k, v in counts.items()})
    root.append(suite)
    return ET.ElementTree(root)


def write_junit(report: dict, path) -> None:
    tree = junit_tree(report)
    ET.indent(tree)
    tree.write(Path(path), encoding="utf-8", xml_declaration=True)


# -- Markdown --------------------------------------------------------------------------------------

def _md(s) -> str:
    """Plain text made safe for a Markdown table cell: specials escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(s).split()))


def _md_code(s) -> str:
    """A code span that holds any text, backticks included."""
    s = " ".join(str(s).split())
    fence = "`" * (max((len(run) for run in re.findall("`+", s)), default=0) + 1)
    return f"{fence} {s} {fence}" if "`" in s else f"`{s}`"


def _status_line(report: dict) -> str:
    parity = parity_part(report)
    status = "PASS" if parity.get("ok") else "FAIL"
    bits = [f"max abs error {fmt(parity.get('max_abs_error'))}"]
    if report.get("model"):
        bits.insert(0, f"model {_md(report['model'])}")
    if parity.get("n_inputs") is not None:
        bits.append(f"{parity['n_inputs']} input sets")
    n_skipped = sum(bool(r.get("skipped")) for r in parity.get("runtimes") or [])
    if n_skipped:
        bits.append(f"{n_skipped} runtime(s) skipped")
    return f"**bridge parity: {status}** ({', '.join(bits)})"


def _md_table(report: dict) -> list[str]:
    lines = ["| runtime | output | max abs | max rel | bound | ok |", "|---|---|--:|--:|--:|---|"]
    for runtime, d, skipped in _runtime_rows(report):
        if skipped:
            lines.append(f"| {_md(runtime)} | {_md_code(d['name'])} | - | - | - | skipped: {_md(skipped)} |")
            continue
        ok = "yes" if d.get("ok") else "**NO**" + (f" {_md(d['problem'])}" if d.get("problem") else "")
        lines.append(f"| {_md(runtime)} | {_md_code(d['name'])} | {fmt(d.get('max_abs_error'))} | "
                     f"{fmt(d.get('max_rel_error'))} | {fmt(d.get('bound'))} | {ok} |")
    return lines


def _first_divergence_lines(report: dict) -> list[str]:
    first = parity_part(report).get("first_divergence")
    if not first:
        return []
    where = []
    for runtime, diffs in module_runtimes(report).items():
        d = next((d for d in diffs if d.get("name") == first), None)
        if d is not None and not d.get("ok"):
            where.append(f"{_md(runtime)}: {_md(_diff_text(d))}")
    return [f"First diverging module: {_md_code(first)}" + (f" ({'; '.join(where)})" if where else "")]


def _tolerance_line(report: dict, escape) -> list[str]:
    rtol, reasons = tolerance_reasons(report)
    if rtol is None:
        return []
    overrides = len(parity_part(report)["tolerance"].get("per_module") or ())
    extra = f"; {overrides} per-module override(s)" if overrides else ""
    return [f"Tolerance: rtol {fmt(rtol)}" + (f" ({escape('; '.join(reasons))})" if reasons else "") + extra]


def _keys_line(report: dict) -> list[str]:
    """Key accounting and the tfjs Transpose count (convert reports only); numbers, nothing to escape."""
    keys = report.get("keys")
    if not isinstance(keys, dict):
        return []
    counts = ", ".join(f"{len(keys.get(k) or ())} {k}" for k in ("used", "ignored", "unused", "shared"))
    tfjs = report.get("tfjs") or {}
    extra = f"; tfjs: {tfjs['transpose_count']} Transpose op(s)" if "transpose_count" in tfjs else ""
    return [f"Weights: {counts}{extra}"]


def markdown_summary(report: dict) -> str:
    """A compact Markdown summary for a pull-request comment or a CI job summary."""
    paragraphs = [_status_line(report), "\n".join(_md_table(report)), *_first_divergence_lines(report),
                  *_tolerance_line(report, _md), *_keys_line(report)]
    return "\n\n".join(paragraphs) + "\n"


# -- the per-module plot ---------------------------------------------------------------------------

def _aligned(report: dict) -> tuple[list[str], dict[str, list[dict | None]]]:
    """Module names in forward order (tf's, then any only another runtime has) and each runtime's
    diffs aligned to them (None where a runtime has no diff for a module)."""
    by_runtime = module_runtimes(report)
    names: list[str] = []
    for diffs in by_runtime.values():
        names += [d["name"] for d in diffs if d["name"] not in names]
    aligned = {}
    for runtime, diffs in by_runtime.items():
        index = {d["name"]: d for d in diffs}
        aligned[runtime] = [index.get(n) for n in names]
    return names, aligned


def _clip(v) -> float:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return math.nan
    return max(float(v), LOG_FLOOR)


def _bound_groups(aligned: dict[str, list[dict | None]]) -> list[tuple[list[str], list[float]]]:
    """Runtimes that share the same per-module bounds, with those bounds (one dashed line each).
    A bound of 0 (exact match required, or not comparable) leaves a gap rather than a dip to the floor."""
    groups: dict[tuple, list[str]] = {}
    for runtime, diffs in aligned.items():
        bounds = tuple(_clip(d["bound"]) if d and (d.get("bound") or 0) > 0 else math.nan for d in diffs)
        groups.setdefault(bounds, []).append(runtime)
    return [(runtimes, list(bounds)) for bounds, runtimes in groups.items()]


def _draw_errors(ax, xs: list[int], aligned: dict, ceiling: float) -> None:
    """One line per runtime; not comparable modules (inf error) as an X at the top of the axis."""
    for runtime, diffs in aligned.items():
        color = _RUNTIME_COLORS.get(runtime)
        ys = [_clip(d.get("max_abs_error")) if d else math.nan for d in diffs]
        finite = [y if math.isfinite(y) else math.nan for y in ys]
        ax.plot(xs, finite, marker="o", markersize=3, linewidth=1.2, color=color, label=f"{runtime} max abs error")
        bad = [(x, ceiling) for x, y in zip(xs, ys) if math.isinf(y)]
        if bad:
            ax.plot(*zip(*bad), linestyle="none", marker="X", markersize=8, color=color,
                    label=f"{runtime}: not comparable (shape/NaN), drawn at top")


def _draw_out_of_bounds(ax, xs: list[int], aligned: dict) -> None:
    points = [(x, _clip(d.get("max_abs_error"))) for diffs in aligned.values() for x, d in zip(xs, diffs)
              if d and not d.get("ok")]
    points = [(x, y) for x, y in points if math.isfinite(y)]
    if points:
        ax.plot(*zip(*points), linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                markeredgecolor="red", label="out of bounds")


def _draw_bounds(ax, xs: list[int], aligned: dict) -> None:
    for runtimes, bounds in _bound_groups(aligned):
        color = _RUNTIME_COLORS.get(runtimes[0]) if len(aligned) > 1 else "black"
        ax.plot(xs, bounds, linestyle="--", linewidth=1, color=color, label=f"bound ({', '.join(runtimes)})")
        ax.plot(xs, bounds, linestyle="none", marker="_", markersize=8, color=color)  # isolated bounds show too


def _ceiling(aligned: dict) -> float:
    values = [_clip(d.get(k)) for diffs in aligned.values() for d in diffs if d
              for k in ("max_abs_error", "bound")]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite, default=1.0) * 10


def _short(name: str, width: int = 40) -> str:
    """A tick label: long module paths keep their start and end (the HTML table has them in full)."""
    return name if len(name) <= width else name[: width // 2 - 1] + "..." + name[-(width // 2 - 2):]


def _figure(report: dict):
    from matplotlib.figure import Figure  # lazy: only plotting needs matplotlib

    names, aligned = _aligned(report)
    fig = Figure(figsize=(min(max(6.0, 0.3 * len(names) + 3), 30.0), 5.0), dpi=100)
    ax = fig.add_subplot()
    status = "PASS" if parity_part(report).get("ok") else "FAIL"
    ax.set_title(f"bridge parity per module{': ' + str(report['model']) if report.get('model') else ''} ({status})")
    if not names:
        ax.text(0.5, 0.5, "no per-module data in this report", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    xs = list(range(len(names)))
    _draw_errors(ax, xs, aligned, _ceiling(aligned))
    _draw_out_of_bounds(ax, xs, aligned)
    _draw_bounds(ax, xs, aligned)
    first = parity_part(report).get("first_divergence")
    if first in names:
        ax.axvline(names.index(first), color="red", linestyle=":", linewidth=1.5, label=f"first divergence: {first}")
    ax.set_yscale("log")
    ax.set_ylabel(f"max abs error vs torch\n(log scale; values < {LOG_FLOOR:g} shown at {LOG_FLOOR:g})")
    ax.set_xlabel("module (forward order)")
    step = max(1, math.ceil(len(names) / 80))  # keep at most ~80 labels readable
    ax.set_xticks(xs[::step], [_short(n) for n in names[::step]], rotation=60, ha="right", fontsize=8)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def plot_png(report: dict) -> bytes:
    """The per-module error plot as PNG bytes."""
    buf = io.BytesIO()
    _figure(report).savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_per_module(report: dict, path) -> None:
    """Max abs error by module (forward order, log scale), one line per runtime, bounds dashed."""
    Path(path).write_bytes(plot_png(report))


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.bad{background:#fdd}.skip{background:#ffd}
.pass{color:#070}.fail{color:#b00}img{max-width:100%}tr.first td{outline:2px solid #b00}"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _html_table(head: list[str], rows: list[str]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _html_runtime_rows(report: dict) -> list[str]:
    rows = []
    for runtime, d, skipped in _runtime_rows(report):
        if skipped:
            rows.append(f'<tr class="skip"><td>{_e(runtime)}</td><td>{_e(d["name"])}</td>'
                        f'<td colspan="4">skipped: {_e(skipped)}</td></tr>')
            continue
        ok = "yes" if d.get("ok") else "NO" + (f": {d['problem']}" if d.get("problem") else "")
        nums = "".join(f'<td class="num">{fmt(d.get(k))}</td>' for k in ("max_abs_error", "max_rel_error", "bound"))
        rows.append(f'<tr class="{"" if d.get("ok") else "bad"}"><td>{_e(runtime)}</td><td>{_e(d["name"])}</td>'
                    f"{nums}<td>{_e(ok)}</td></tr>")
    return rows


def _html_module_table(report: dict) -> str:
    names, aligned = _aligned(report)
    first = parity_part(report).get("first_divergence")
    rows = []
    for i, name in enumerate(names):
        ds = [aligned[r][i] for r in aligned]
        shape = next((d.get("shape") for d in ds if d), None)
        cells = "".join(f'<td class="num{"" if d is None or d.get("ok") else " bad"}">'
                        f'{fmt(d.get("max_abs_error")) if d else "-"} / {fmt(d.get("bound")) if d else "-"}</td>'
                        for d in ds)
        problems = "; ".join(f"{r}: {d['problem']}" for r, d in zip(aligned, ds) if d and d.get("problem"))
        rows.append(f'<tr class="{"first" if name == first else ""}"><td>{i}</td><td>{_e(name)}</td>'
                    f"<td>{_e(shape)}</td>{cells}<td>{_e(problems)}</td></tr>")
    head = ["#", "module", "shape", *(f"{r}: max abs / bound" for r in aligned), "problem"]
    return _html_table(head, rows)


def _html_facts(report: dict) -> str:
    items = _tolerance_line(report, str) + _keys_line(report)
    ckpt = report.get("checkpoint") or {}
    if ckpt:
        items.append(f"checkpoint: {ckpt.get('path')} ({ckpt.get('format')}, sha256 {ckpt.get('sha256')})")
    items += [f"note: {n}" for n in report.get("notes") or []]
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>" if items else ""


def html_page(report: dict) -> str:
    """One self-contained HTML page: summary tables, the plot (inline PNG) and per-module errors."""
    parity = parity_part(report)
    ok = bool(parity.get("ok"))
    title = f"bridge parity: {'PASS' if ok else 'FAIL'}" + (f" ({report['model']})" if report.get("model") else "")
    first = parity.get("first_divergence")
    png = base64.b64encode(plot_png(report)).decode("ascii")
    head = ["runtime", "output", "max abs", "max rel", "bound", "ok"]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1 class="{"pass" if ok else "fail"}">{_e(title)}</h1>',
        f"<p>max abs error {fmt(parity.get('max_abs_error'))}, max rel error {fmt(parity.get('max_rel_error'))}, "
        f"{_e(parity.get('n_inputs', '?'))} input sets</p>",
        f'<p class="fail">first diverging module: <code>{_e(first)}</code></p>' if first else "",
        _html_table(head, _html_runtime_rows(report)), _html_facts(report),
        "<h2>Error by module</h2>", f'<img alt="max abs error by module" src="data:image/png;base64,{png}">',
        "<h2>Per-module errors (forward order)</h2>", _html_module_table(report), "</body></html>", ""])


def write_html(report: dict, path) -> None:
    Path(path).write_text(html_page(report), encoding="utf-8")


# -- all at once -----------------------------------------------------------------------------------

def write_all(report: dict, out_dir, *, junit=None, markdown=None, html=None, plot=None) -> dict[str, Path]:
    """Write the reports that are asked for and return {kind: path}.

    Each keyword is None (not written), True (the default name, e.g. ``parity.xml``) or a file name;
    relative names are taken inside ``out_dir``, which is created if needed.
    """
    writers = {"junit": write_junit, "markdown": lambda r, p: Path(p).write_text(markdown_summary(r), "utf-8"),
               "html": write_html, "plot": plot_per_module}
    asked = {"junit": junit, "markdown": markdown, "html": html, "plot": plot}
    written = {}
    for kind, name in asked.items():
        if name is None or name is False:
            continue
        path = Path(out_dir) / (DEFAULT_NAMES[kind] if name is True else Path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        writers[kind](report, path)
        written[kind] = path
    return written
