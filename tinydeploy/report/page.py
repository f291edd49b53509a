"""The validation report page: formatted tables built from the ``validation.json`` facts.

Every value goes through :func:`fmt` (units, %, thousands grouping, yes/no; never a raw
``dict``, ``True`` or ``None``), so the page reads like an engineer's report, not a dump.
:mod:`tinydeploy.report.plots` makes the plots; :func:`tinydeploy.validation.write_html`
writes the file.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .fmt import fmt, label, number, pct

__all__ = ["fmt", "label", "number", "pct", "validation_page"]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.92em} th{background:#f4f4f4} td.n{text-align:right}
td.diag{background:#e8f5e9;font-weight:600} td.off{background:#ffebee}
.pass{color:#fff;background:#2e7d32;padding:.15em .6em;border-radius:4px}
.warning{color:#222;background:#ffb300;padding:.15em .6em;border-radius:4px}
.headline{margin:.6em 0 1em}
.fig{display:inline-block;vertical-align:top;border:1px solid #ddd;border-radius:6px;
padding:.5em .9em;min-width:11em;margin:0 .6em .6em 0}
.fig .k{font-size:.8em;color:#555;text-transform:uppercase;letter-spacing:.04em}
.fig .v{font-size:1.35em;font-weight:600} .fig .s{font-size:.8em;color:#555}
ul.diag{padding-left:1.2em} ul.diag li{margin:.3em 0}
li.d-cause{color:#b71c1c} li.d-warning{color:#8d5a00} li.d-note{color:#444}
.fail{color:#fff;background:#c62828;padding:.15em .6em;border-radius:4px}
.plots{display:flex;flex-wrap:wrap;gap:1em} .plots figure{margin:0}
figcaption{font-size:.85em;color:#555;text-align:center;max-width:380px}
p.note{color:#555;font-size:.9em} .mono{font-family:ui-monospace,monospace;font-size:.85em}
"""


# --- tables ------------------------------------------------------------------------------
def _cell(text: str, cls: str = "") -> str:
    return f"<td{f' class={cls!r}' if cls else ''}>{html.escape(text)}</td>"


def rows_table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of already formatted (label, text) rows."""
    body = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in rows)
    return f"<table>{body}</table>"


def dict_table(values: Mapping[str, Any]) -> str:
    """A two-column table of a (possibly nested) dict; nested keys become ``a: b``."""
    return rows_table([(label(k), fmt(v)) for k, v in _flatten(values).items()])


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def grid(header: Sequence[str], rows: Sequence[Sequence[str]],
         classes: Sequence[Sequence[str]] | None = None) -> str:
    """A table with a header row; ``classes`` optionally styles each cell."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        cls = classes[r] if classes else [""] * len(row)
        body.append("<tr>" + "".join(_cell(c, k) for c, k in zip(row, cls, strict=True))
                    + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def records_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A table of a list of dicts (columns: the union of keys in first-seen order)."""
    cols: list[str] = []
    for rec in records:
        cols += [k for k in rec if k not in cols]
    rows = [[fmt(rec.get(c)) for c in cols] for rec in records]
    return grid([label(c) for c in cols], rows, [["n" if isinstance(rec.get(c), int | float)
                                                   and not isinstance(rec.get(c), bool) else ""
                                                   for c in cols] for rec in records])


# --- sections ----------------------------------------------------------------------------
AGREEMENT: list[tuple[str, str, Callable[[Any], str]]] = [
    ("exact_match_rate", "output values bit-exact", pct),
    ("exact_sample_rate", "samples bit-exact", pct),
    ("samples_within_tolerance", "samples within tolerance", fmt),
    ("samples_differing", "samples differing", fmt),
    ("max_abs_diff_lsb", "max |device - host|", lambda v: f"{fmt(v)} LSB"),
    ("mean_abs_diff_lsb", "mean |device - host|", lambda v: f"{number(v, 4)} LSB"),
    ("mae", "MAE (dequantized)", fmt),
    ("rmse", "RMSE (dequantized)", fmt),
    ("l2_relative_error", "L2 relative error", lambda v: pct(v, 4)),
    ("cosine_similarity", "cosine similarity", lambda v: number(v, 8)),
    ("top1_agreement", "top-1 agreement (host vs device)", pct),
]


def verdict_rows(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header table: verdict, date, version, command, board, runtime, model hash."""
    tol = doc.get("tolerance_lsb", 0)
    tol_text = "bit-exact" if not tol else f"|device - host| <= {tol} LSB"
    if doc.get("tolerance_float"):
        tol_text += f" (float outputs: <= {doc['tolerance_float']:g})"
    n, bad, known = doc.get("samples", 0), doc.get("differing", 0), doc.get("explained", 0)
    verdict = (f"PASS: all {n} samples {tol_text}" if doc.get("passed")
               else f"FAIL: {bad} of {n} samples differ (required: {tol_text})")
    if doc.get("passed") and known:
        verdict = (f"PASS with a note: {n - known} of {n} samples {tol_text}, {known} differ "
                   "only by a known TFLM version difference (not a device fault)")
    if doc.get("state") == "warning":
        verdict = verdict.replace("PASS", "PASS with warnings", 1) + " (see the diagnosis)"
    run = doc.get("report", {}).get("run", {})
    rows = [("verdict", verdict)]
    rows += [("known TFLM version difference", str(x.get("text", "")))
             for x in doc.get("known_differences", [])]
    rows += [("compared", str(r.get("text", "")))
             for r in doc.get("metrics", {}).get("comparison", [])]
    ref = doc.get("host_reference", {})
    if ref.get("version"):
        rows.append(("host reference", f"{ref.get('package', 'tflite-micro')} {ref['version']}"
                     + (" (the tested build)" if ref.get("tested_match")
                        else f" (NOT the tested build {ref.get('tested')})")))
    elif ref.get("name"):  # a stand-in where tflite-micro is missing (hostref_native)
        rows.append(("host reference", str(ref["name"])))
    for key, name in (("date", "date"), ("tinydeploy", "tinydeploy version"),
                      ("command", "command line"), ("board", "board"),
                      ("runtime", "runtime"), ("model", "model"),
                      ("model_sha256", "model SHA-256")):
        if run.get(key):
            rows.append((name, str(run[key])))
    return rows


def agreement_section(m: Mapping[str, Any]) -> str:
    unit = str(m.get("diff_unit", "LSB"))
    rows = [(name, conv(m[key]).replace(" LSB", f" {unit}"))
            for key, name, conv in AGREEMENT if key in m]
    if "max_abs_diff" in m:
        rows.append(("max |device - host| (value)", fmt(m["max_abs_diff"])))
    if m.get("output"):
        rows.insert(0, ("output tensor", f"{m['output']} ({fmt(m.get('values'))} values in "
                                         f"{fmt(m.get('samples'))} samples)"))
    return "<h2>Host vs device</h2>" + rows_table(rows)


def task_section(m: Mapping[str, Any]) -> str:
    if "accuracy_host" in m:
        rows = [("task", "classification"), ("accuracy, host (TFLM Python)",
                                              pct(m["accuracy_host"])),
                ("accuracy, device", pct(m["accuracy_device"]))]
    elif "mae_host" in m:
        rows = [("task", "regression"), ("MAE vs labels, host", fmt(m["mae_host"])),
                ("MAE vs labels, device", fmt(m["mae_device"]))]
    else:
        return ""
    return "<h2>Against the labels</h2>" + rows_table(rows)


def _confusion(matrix: list[list[int]], names: Sequence[str] | None = None) -> str:
    names = list(names) if names and len(names) == len(matrix) else [
        str(k) for k in range(len(matrix))]
    header = ["true \\ predicted", *names]
    rows, cls = [], []
    for i, row in enumerate(matrix):
        rows.append([names[i], *(str(v) for v in row)])
        cls.append(["", *("diag" if i == j else ("off" if v else "n")
                          for j, v in enumerate(row))])
    return grid(header, rows, cls)


def classification_section(c: Mapping[str, Any]) -> str:
    """Confusion matrices (host, device vs labels; one when both predicted the same class
    for every sample) and the per-class table, rows and columns named by class."""
    names = c.get("names") or []
    sides = ((("host", "host and device (identical predictions) vs labels"),) if c.get("agree")
             else (("host", "host (TFLM Python) vs labels"), ("device", "device vs labels")))
    parts = ["<h2>Per class</h2><div class='plots'>"]
    for side, name in sides:
        parts.append(f"<div><h3>Confusion matrix, {html.escape(name)}</h3>"
                     f"{_confusion(c[side]['confusion'], names)}</div>")
    parts.append("</div>")
    rows = []
    for h, d in zip(c["host"]["per_class"], c["device"]["per_class"], strict=True):
        k = int(h["class"])
        sides = (h,) if c.get("agree") else (h, d)
        rows.append([names[k] if k < len(names) else str(k),
                     *(pct(x[key], 1) for x in sides for key in ("precision", "recall", "f1")),
                     str(h["support"])])
    head = (["precision", "recall", "F1"] if c.get("agree") else
            ["precision host", "recall host", "F1 host", "precision device", "recall device",
             "F1 device"])
    parts.append(grid(["class", *head, "support"], rows))
    return "".join(parts)


def _values(values: list[int], positions: list[int] | None,
            other: list[int] | None = None) -> str:
    """Output values as HTML; with ``other``, the values that differ from it in bold."""
    text = " ".join(f"<b>{v}</b>" if other is not None and v != o else str(v)
                    for v, o in zip(values, other or values, strict=True))
    return f"[{positions[0]}..{positions[1]}] {text}" if positions else text


def differing_section(dif: Mapping[str, Any], tolerance: int) -> str:
    if not dif.get("count"):
        return ""
    rows = []
    for r in dif["rows"]:
        cls = (f"{r['expected_class']} -> {r['got_class']}" if "expected_class" in r else "-")
        rows.append([html.escape(str(r["index"])), f"{r['max_lsb']} LSB", html.escape(cls),
                     _values(r["expected"], r.get("positions")),
                     _values(r["got"], r.get("positions"), r["expected"])])
    note = (f"<p class='note'>{dif['count']} samples exceed the tolerance of {tolerance} LSB; "
            f"the first {dif['shown']} are listed (all rows are in samples.csv).</p>")
    note = note.replace("</p>", " Values that differ are in bold.</p>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ("sample", "max |Δ|", "class host -> device", "expected (host)",
                    "got (device)"))
    body = "".join("<tr>" + "".join(f"<td class='mono'>{c}</td>" if k > 2 else f"<td>{c}</td>"
                                    for k, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<h2>Differing samples</h2>{note}<table><tr>{head}</tr>{body}</table>"


def latency_section(lat: Mapping[str, Any]) -> str:
    if not lat.get("stats"):
        return ""
    keys = ("min", "median", "p90", "p99", "max", "mean")
    unit = lat["unit"]
    rows = [[unit, *(number(lat["stats"][k], 4) for k in keys)]]
    if lat.get("cycles"):
        rows.append(["cycles", *(number(lat["cycles"][k], 4) for k in keys)])
    note = f"<p class='note'>{html.escape(lat.get('what', ''))}"
    if lat.get("clock"):
        note += f"; clock: {html.escape(str(lat['clock']))}"
    if lat.get("below_resolution"):
        note += (f"; {lat['below_resolution']} samples read 0 µs (faster than the 1 µs "
                 "timer)")
    note += f"; {lat['stats']['count']} samples.</p>"
    title = "Latency" + (" (emulated instructions, not time)" if unit == "instructions" else "")
    return f"<h2>{title}</h2>{grid(['unit', *keys], rows)}{note}"


def memory_section(mem: Mapping[str, Any]) -> str:
    rows = []
    if "arena_planned_bytes" in mem:
        rows.append(("tensor arena, planned", fmt(mem["arena_planned_bytes"], "B")))
    if "arena_used_bytes" in mem:
        used = mem["arena_used_bytes"]
        share = (f" ({pct(used / mem['arena_planned_bytes'], 1)} of planned)"
                 if mem.get("arena_planned_bytes") else "")
        rows.append(("tensor arena, used (device)", fmt(used, "B") + share))
    for key, name in (("arena_bytes", "C runtime static arena (planned offline)"),
                      ("weight_bytes", "C runtime weights (const, flash)"),
                      ("param_bytes", "C runtime quantization parameters (const)")):
        if key in mem.get("c_runtime", {}):
            rows.append((name, fmt(mem["c_runtime"][key], "B")))
    elf = mem.get("elf", {})
    for key, name in (("flash_bytes", "flash (.text + .data)"),
                      ("ram_bytes", "static RAM (.data + .bss)"), ("text", ".text"),
                      ("data", ".data"), ("bss", ".bss")):
        if key in elf:
            rows.append((f"{name}, {elf.get('build', 'firmware')} ELF", fmt(elf[key], "B")))
    return "<h2>Memory</h2>" + rows_table(rows) if rows else ""


LINK = (("retransmits", "requests resent"), ("timeouts", "reply timeouts"),
        ("crc_errors", "damaged frames received (CRC / framing)"),
        ("rejected", "requests the device received damaged"),
        ("chunk_shrinks", "chunks halved on a noisy line"),
        ("chunk_bytes", "chunk size at the end (bytes)"), ("resets", "device resets"),
        ("bytes_sent", "bytes sent"), ("bytes_received", "bytes received"))


def link_section(link: Mapping[str, Any]) -> str:
    rows = [(name, fmt(link[key])) for key, name in LINK if key in link]
    return "<h2>Serial link</h2>" + rows_table(rows) if rows else ""


def device_section(dev: Mapping[str, Any], clock: str) -> str:
    rows = []
    for key, name in (("board_id", "board"), ("firmware_version", "firmware"),
                      ("runtime", "runtime"), ("protocol_version", "protocol version"),
                      ("max_payload", "max frame payload")):
        if key in dev:
            rows.append((name, fmt(dev[key], "B" if key == "max_payload" else "")))
    if clock:  # the board's one clock statement (the same as the latency section's)
        rows.append(("clock", clock))
    for side in ("input", "output"):
        t = dev.get(side)
        if isinstance(t, Mapping):
            rows.append((f"{side} tensor", f"{t.get('dtype', '?')} {list(t.get('shape', []))}"))
    return "<h2>Device</h2>" + rows_table(rows)


HEADLINE = (("accuracy", "accuracy (host / device)"), ("mae", "vs labels (host / device)"),
            ("latency", "latency"), ("ram", "RAM"), ("flash", "flash"))


def headline_section(head: Mapping[str, Any]) -> str:
    """The answer first: the verdict line and the key figures as tiles."""
    if not head:
        return ""
    tiles = []
    for key, name in HEADLINE:
        if key not in head:
            continue
        text = str(head[key].get("text", ""))
        main, _, sub = text.partition(" (")
        if key == "accuracy":
            main = f"{pct(head[key]['host'])} / {pct(head[key]['device'])}"
            sub = ""
        elif key == "mae":
            main = f"{number(head[key]['host'], 4)} / {number(head[key]['device'], 4)}"
            sub = "MAE"
        tiles.append(f"<div class='fig'><div class='k'>{html.escape(name)}</div>"
                     f"<div class='v'>{html.escape(main)}</div>"
                     f"<div class='s'>{html.escape(sub.rstrip(')'))}</div></div>")
    ref = (f"<br><span class='note'>against the host reference "
           f"{html.escape(str(head['reference']))}</span>" if head.get("reference") else "")
    return (f"<p><b>{html.escape(str(head.get('text', '')))}</b>{ref}</p>"
            f"<div class='headline'>{''.join(tiles)}</div>")


def diagnosis_section(diag: Sequence[Mapping[str, Any]]) -> str:
    """Causes, warnings and notes, one line each (empty: no section)."""
    if not diag:
        return ""
    items = "".join(f"<li class='d-{html.escape(str(d.get('level', 'note')))}'><b>"
                    f"{html.escape(str(d.get('level', 'note')))}</b>: "
                    f"{html.escape(str(d.get('text', '')))}</li>" for d in diag)
    return f"<h2>Diagnosis</h2><ul class='diag'>{items}</ul>"


ERRORS = (("mean", "error mean"), ("std", "error std"), ("mae", "MAE"), ("rmse", "RMSE"),
          ("max_abs", "max |error|"), ("nse", "NSE"))


def errors_section(rep: Mapping[str, Any]) -> str:
    """Error statistics of the dequantized outputs: device vs host, and device and host vs
    the float model where it was found (ST's X-cross)."""
    rows = [(name, stats) for name, stats in rep.get("errors", {}).items() if stats]
    fr = rep.get("float_reference", {})
    rows += [(f"{side} vs float model", fr[side]) for side in ("device", "host")
             if fr.get(side)]
    if not rows:
        return ""
    cols = [(k, n) for k, n in ERRORS if any(k in st for _, st in rows)]
    body = [[name, *(number(st[k], 4) if k in st else "-" for k, _ in cols)]
            for name, st in rows]
    note = (f"<p class='note'>float model: {html.escape(str(fr['model']))}</p>"
            if fr.get("model") else "")
    return ("<h2>Errors (dequantized outputs)</h2>"
            + grid(["compared", *(n for _, n in cols)], body) + note)


def layers_section(layers: Sequence[Mapping[str, Any]]) -> str:
    if not layers:
        return ""
    return "<h2>Per-layer cost</h2>" + records_table(layers)


BADGES = {"pass": ("pass", "PASS"), "warning": ("warning", "PASS with warnings"),
          "fail": ("fail", "FAIL")}


def page(title: str, passed: bool | None, body: Sequence[str], figures: Sequence[str],
         figure_note: str = "", state: str | None = None) -> str:
    """The whole self-contained HTML document; the badge shows ``state`` (pass, warning,
    fail; default from ``passed``)."""
    badge = ""
    if passed is not None or state:
        cls, text = BADGES[state or ("pass" if passed else "fail")]
        badge = f'<span class="{cls}">{text}</span>'
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)} {badge}</h1>", *[b for b in body if b]]
    if figures:
        note = f"<p class='note'>{html.escape(figure_note)}</p>" if figure_note else ""
        parts.append("<h2>Plots</h2>" + note + "<div class='plots'>" + "".join(figures)
                     + "</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _layers(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A per-layer profile wherever validation.json carries one (a list of dicts)."""
    places = (doc.get("report", {}), doc, doc.get("metrics", {}), doc.get("device", {}),
              doc.get("profile", {}) if isinstance(doc.get("profile"), Mapping) else {})
    for place in places:
        layers = place.get("layers") if isinstance(place, Mapping) else None
        if isinstance(layers, list) and layers and all(isinstance(x, Mapping) for x in layers):
            return layers
    return []


def validation_page(doc: Mapping[str, Any], extra: Mapping[str, Mapping[str, Any]],
                    figures: Sequence[str], title: str) -> str:
    """The validation (or deploy) report from the validation.json document ``doc``.

    Args:
        doc: ``ValidationResult.to_dict()`` plus ``model``; facts under ``report``.
        extra: more sections (name -> dict), shown after the header (deploy stages...).
        figures: ``<figure>`` snippets from :func:`tinydeploy.report.plots.validation_plots`.
        title: page title.

    Returns:
        The HTML text.
    """
    rep = doc.get("report", {})
    m = doc.get("metrics", {})
    body = [headline_section(rep.get("headline", {})),
            diagnosis_section(rep.get("diagnosis", [])),
            "<h2>Summary</h2>" + rows_table(verdict_rows(doc))]
    body += [f"<h2>{html.escape(name)}</h2>{dict_table(rows)}"
             for name, rows in extra.items() if rows]
    body += [agreement_section(m), task_section(m), errors_section(rep)]
    if rep.get("classification"):
        body.append(classification_section(rep["classification"]))
    body.append(differing_section(rep.get("differing", {}), int(doc.get("tolerance_lsb", 0))))
    lat = rep.get("latency", {})
    body += [latency_section(lat), memory_section(rep.get("memory", {})),
             link_section(rep.get("link", {})),
             device_section(doc.get("device", {}), str(lat.get("clock", ""))),
             layers_section(_layers(doc))]
    model = doc.get("model_facts", {})
    if model:
        body.append("<h2>Model</h2>" + rows_table([(label(k), fmt(v)) for k, v in model.items()]))
    return page(title, doc.get("passed"), body, figures, rep.get("plot_note", ""),
                rep.get("headline", {}).get("state"))
