"""bridge/reports.py: JUnit XML, Markdown, the per-module PNG, the HTML page and write_all,
on small hand-built parity reports (passing, failing with a first divergence, a skipped runtime)."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bridge import reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def diff(name, err, bound=1e-4, shape=(2, 4), problem=None, ok=None):
    return {"name": name, "shape": list(shape), "max_abs_error": err, "max_rel_error": err / 2,
            "bound": bound, "ok": (err <= bound and problem is None) if ok is None else ok, "problem": problem}


def runtime(name, outputs, skipped=None):
    return {"runtime": name, "ok": skipped is None and all(o["ok"] for o in outputs), "skipped": skipped,
            "max_abs_error": max((o["max_abs_error"] for o in outputs), default=0.0),
            "max_rel_error": max((o["max_rel_error"] for o in outputs), default=0.0), "outputs": outputs}


def parity(runtimes, per_module, first=None, **extra):
    ran = [r for r in runtimes if r["skipped"] is None]
    return {"ok": all(r["ok"] for r in ran), "max_abs_error": max((r["max_abs_error"] for r in ran), default=0.0),
            "max_rel_error": max((r["max_rel_error"] for r in ran), default=0.0), "first_divergence": first,
            "n_inputs": 3, "runtimes": runtimes, "per_module": per_module, **extra}


@pytest.fixture
def passing():
    """A full convert report: two runtimes, two outputs each, three modules (one with zero error)."""
    mods = [diff("conv", 0.0), diff("bn", 2.5e-7), diff("fc", 1.234e-6)]
    p = parity([runtime("tf", [diff("logits", 1.234e-6), diff("aux", 3e-7)]),
                runtime("tfjs-wasm", [diff("logits", 2.5e-6), diff("aux", 4e-7)])], mods,
               tolerance={"rtol": 1e-4, "reasons": ["default"]})
    return {"model": "TinyNet", "checkpoint": {"path": "tiny.pt", "sha256": "ab" * 32, "format": "torch-zip"},
            "notes": ["unwrapped 'state_dict'"], "inputs": [{"name": "x", "shape": [2, 3], "dtype": "float32"}],
            "outputs": ["logits", "aux"],
            "keys": {"used": {"conv.weight": "conv2d_kernel", "fc.weight": "linear_kernel", "fc.bias": "identity"},
                     "ignored": {"bn.num_batches_tracked": "counter"}, "unused": [], "shared": {}},
            "tfjs": {"op_counts": {"Transpose": 2, "Relu": 1}, "transpose_count": 2, "weights_bytes": 100},
            "timings": {}, "parity": p}


@pytest.fixture
def failing():
    """A bridge check report (parity at top level): tfjs-cpu diverges from module `<script>alert(1)</script>`."""
    evil = "blocks.1.<script>alert(1)</script>"
    tf_mods = [diff("stem", 1e-7), diff(evil, 2e-6), diff("head", 3e-6)]
    cpu_mods = [diff("stem", 2e-7), diff(evil, 0.25, bound=1e-3), diff("head", 0.5, bound=1e-3)]
    return parity([runtime("tf", [diff("output_0", 3e-6)]),
                   runtime("tfjs-cpu", [diff("output_0", 0.5, bound=1e-3)])], tf_mods, first=evil,
                  per_module_runtimes={"tf": tf_mods, "tfjs-cpu": cpu_mods})


@pytest.fixture
def skipped():
    """tfjs-wasm skipped; the tf per-module list has a shape mismatch (inf error) and the report
    has no per_module_runtimes (the fallback is {"tf": per_module})."""
    mods = [diff("a", 1e-6), diff("b", float("inf"), bound=0.0, problem="shape [2, 3] != torch [2, 4]")]
    return parity([runtime("tf", [diff("output_0", 1e-6)]), runtime("tfjs-wasm", [], skipped="node not found")],
                  mods, first="b")


def junit(report, tmp_path):
    path = tmp_path / "parity.xml"
    reports.write_junit(report, path)
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert root.tag == "testsuites" and len(suites) == 1 and suites[0].get("name") == "bridge.parity"
    return root, suites[0]


def counts(el):
    return {k: int(el.get(k)) for k in ("tests", "failures", "skipped", "errors")}


def names(suite, child=None):
    cases = suite.findall("testcase")
    return [c.get("name") for c in cases if child is None or c.find(child) is not None]


# -- JUnit -----------------------------------------------------------------------------------------

def test_junit_passing_counts_and_names(passing, tmp_path):
    root, suite = junit(passing, tmp_path)
    assert counts(suite) == counts(root) == {"tests": 7, "failures": 0, "skipped": 0, "errors": 0}
    assert names(suite) == ["tf::logits", "tf::aux", "tfjs-wasm::logits", "tfjs-wasm::aux", "conv", "bn", "fc"]
    assert [c.get("classname") for c in suite.findall("testcase")][-3:] == ["modules.tf"] * 3
    assert suite.find("properties/property[@name='model']").get("value") == "TinyNet"


def test_junit_failing_carries_error_bound_and_first_divergence(failing, tmp_path):
    root, suite = junit(failing, tmp_path)
    # cases: tf::output_0, tfjs-cpu::output_0, then the 3 tf modules (per_module only, all within bounds)
    assert counts(suite) == {"tests": 5, "failures": 1, "skipped": 0, "errors": 0}
    assert names(suite, "failure") == ["tfjs-cpu::output_0"]
    failure = suite.find("testcase[@name='tfjs-cpu::output_0']/failure")
    assert failure.get("message") == "max abs error 0.5 vs bound 0.001 (max rel error 0.25)"
    assert "first diverging module: blocks.1.<script>alert(1)</script>" in failure.text  # parsed back, unescaped
    raw = (tmp_path / "parity.xml").read_text()
    assert "<script>" not in raw and "&lt;script&gt;" in raw


def test_junit_skipped_runtime_and_failing_module(skipped, tmp_path):
    _, suite = junit(skipped, tmp_path)
    assert counts(suite) == {"tests": 4, "failures": 1, "skipped": 1, "errors": 0}
    assert names(suite) == ["tf::output_0", "tfjs-wasm::output_0", "a", "b"]
    assert names(suite, "skipped") == ["tfjs-wasm::output_0"]
    assert suite.find("testcase[@name='tfjs-wasm::output_0']/skipped").get("message") == "node not found"
    failure = suite.find("testcase[@name='b']/failure")
    assert failure.get("message") == "max abs error inf vs bound 0 (max rel error inf); shape [2, 3] != torch [2, 4]"
    assert suite.find("testcase[@name='b']").get("classname") == "modules.tf"


def test_junit_strips_characters_xml_cannot_hold(skipped, tmp_path):
    skipped["runtimes"][1]["skipped"] = "node crashed: \x1b[31mSIGSEGV\x00"
    _, suite = junit(skipped, tmp_path)
    assert suite.find("testcase/skipped").get("message") == "node crashed: ?[31mSIGSEGV?"


# -- Markdown --------------------------------------------------------------------------------------

def test_markdown_passing(passing):
    md = reports.markdown_summary(passing)
    assert md.startswith("**bridge parity: PASS** (model TinyNet, max abs error 2.5e-06, 3 input sets)")
    assert "| tf | `logits` | 1.23e-06 | 6.17e-07 | 0.0001 | yes |" in md
    assert "| tfjs-wasm | `aux` | 4e-07 | 2e-07 | 0.0001 | yes |" in md
    assert "Weights: 3 used, 1 ignored, 0 unused, 0 shared; tfjs: 2 Transpose op(s)" in md
    assert "Tolerance: rtol 0.0001 (default)" in md
    assert "First diverging" not in md and "FAIL" not in md


def test_markdown_failing_names_the_module_safely(failing):
    md = reports.markdown_summary(failing)
    assert md.startswith("**bridge parity: FAIL** (max abs error 0.5, 3 input sets)")
    assert "| tfjs-cpu | `output_0` | 0.5 | 0.25 | 0.001 | **NO** |" in md
    first = next(line for line in md.splitlines() if line.startswith("First diverging module:"))
    assert first.startswith("First diverging module: `blocks.1.<script>alert(1)</script>` (tfjs-cpu: max abs")
    assert "0.25 vs bound 0.001" in first and "tf: " not in first  # tf is within bounds there
    assert "Weights:" not in md  # a check report has no key accounting


def test_markdown_skipped(skipped):
    md = reports.markdown_summary(skipped)
    assert "1 runtime(s) skipped" in md.splitlines()[0]
    assert "| tfjs-wasm | `output_0` | - | - | - | skipped: node not found |" in md
    assert "(tf: max abs error inf vs bound 0 (max rel error inf); shape \\[2, 3\\] != torch \\[2, 4\\])" in md


def test_markdown_table_cells_cannot_break_the_table(skipped):
    skipped["runtimes"][1]["skipped"] = "a | b\nc"
    row = next(line for line in reports.markdown_summary(skipped).splitlines() if line.startswith("| tfjs-wasm"))
    assert row.endswith("skipped: a \\| b c |") and row.count(" | ") == 5


def test_format_three_significant_digits():
    values = (0.000123456, 123456.0, 0.0, float("inf"), None, 7, np.float32(1.2345678e-5))
    assert [reports.fmt(v) for v in values] == ["0.000123", "1.23e+05", "0", "inf", "-", "7", "1.23e-05"]


def test_tolerance_line_accepts_the_single_reason_form(passing):
    passing["parity"]["tolerance"] = {"rtol": 1e-4, "reason": "float32 default", "per_module": {"fc": 1e-3}}
    assert "Tolerance: rtol 0.0001 (float32 default); 1 per-module override(s)" in reports.markdown_summary(passing)


# -- the plot --------------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("case", ["passing", "failing", "skipped"])
def test_plot_is_a_sensible_png(case, request, tmp_path):
    report = request.getfixturevalue(case)
    path = tmp_path / f"{case}.png"
    reports.plot_per_module(report, path)
    width, height = png_size(path.read_bytes())
    assert 500 <= width <= 3500 and 300 <= height <= 1000, (width, height)
    assert path.stat().st_size > 5_000


def test_plot_lines_per_runtime_bounds_and_divergence(failing):
    fig = reports._figure(failing)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["tf max abs error", "tfjs-cpu max abs error", "out of bounds", "bound (tf)",
                      "bound (tfjs-cpu)", "first divergence: blocks.1.<script>alert(1)</script>"]
    ringed = next(line for line in ax.get_lines() if line.get_label() == "out of bounds")
    assert list(ringed.get_xdata()) == [1, 2] and list(ringed.get_ydata()) == [0.25, 0.5]  # tfjs-cpu only
    assert ax.get_yscale() == "log" and "1e-12" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stem", "blocks.1.<script>alert(1)</script>", "head"]


def test_plot_clips_zero_errors_to_the_floor(passing):
    ax = reports._figure(passing).axes[0]
    tf_line = next(line for line in ax.get_lines() if line.get_label() == "tf max abs error")
    assert list(tf_line.get_ydata()) == [reports.LOG_FLOOR, 2.5e-7, 1.234e-6]


def test_plot_marks_not_comparable_modules(skipped):
    ax = reports._figure(skipped).axes[0]
    marks = next(line for line in ax.get_lines() if "not comparable" in line.get_label())
    assert list(marks.get_xdata()) == [1] and marks.get_ydata()[0] == pytest.approx(1e-3)  # 10x the largest finite


def test_plot_shortens_long_tick_labels(passing):
    passing["parity"]["per_module"][2]["name"] = "encoder.layers.11.attention.self.query.inner_proj"
    labels = [t.get_text() for t in reports._figure(passing).axes[0].get_xticklabels()]
    assert labels[2] == "encoder.layers.11.a...f.query.inner_proj" and len(labels[2]) == 40


def test_plot_without_modules(passing, tmp_path):
    passing["parity"]["per_module"] = []
    reports.plot_per_module(passing, tmp_path / "empty.png")
    png_size((tmp_path / "empty.png").read_bytes())


# -- HTML ------------------------------------------------------------------------------------------

def test_html_is_self_contained_and_escaped(failing, tmp_path):
    path = tmp_path / "parity.html"
    reports.write_html(failing, path)
    page = path.read_text()
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match and base64.b64decode(match.group(1))[:8] == PNG_MAGIC
    assert "<script" not in page.lower()
    assert "blocks.1.&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)  # no external assets
    assert "bridge parity: FAIL" in page and "0.25 / 0.001" in page  # tfjs-cpu module cell


def test_html_full_report_has_tables_and_notes(passing, tmp_path):
    passing["notes"].append("cast <float64> & friends")
    page = reports.html_page(passing)
    assert "note: cast &lt;float64&gt; &amp; friends" in page
    assert "<td>tfjs-wasm</td><td>aux</td>" in page
    assert "Weights: 3 used, 1 ignored, 0 unused, 0 shared; tfjs: 2 Transpose op(s)" in page
    assert page.count("<tr") == 1 + 4 + 1 + 3  # runtime table head + rows, module table head + rows


# -- write_all -------------------------------------------------------------------------------------

def test_write_all_writes_exactly_what_is_asked(passing, tmp_path):
    out = tmp_path / "reports"
    written = reports.write_all(passing, out, junit=True, html="page.html")
    assert written == {"junit": out / "parity.xml", "html": out / "page.html"}
    assert sorted(p.name for p in out.iterdir()) == ["page.html", "parity.xml"]


def test_write_all_markdown_only_and_nothing(passing, tmp_path):
    written = reports.write_all(passing, tmp_path / "a", markdown="summary.md")
    assert list(written) == ["markdown"] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["summary.md"]
    assert written["markdown"].read_text() == reports.markdown_summary(passing)
    assert reports.write_all(passing, tmp_path / "b") == {} and not (tmp_path / "b").exists()


def test_matplotlib_is_lazy_and_pyplot_unused(passing, tmp_path):
    """Importing bridge.reports loads no matplotlib; plotting uses Figure only (no pyplot, backend untouched)."""
    (tmp_path / "r.json").write_text(json.dumps(passing))
    code = ("import json, sys; import bridge.reports as r; assert 'matplotlib' not in sys.modules; "
            f"r.plot_per_module(json.load(open({str(tmp_path / 'r.json')!r})), {str(tmp_path / 'p.png')!r}); "
            "assert 'matplotlib.figure' in sys.modules and 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
