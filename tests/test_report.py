"""The validation report an engineer reads: header, formatted tables (no raw dicts or
Python ``True``), confusion matrix and per-class table, differing samples, latency in the
board's unit (instructions on qemu-cm4), memory, link counters, per-layer table, plots."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.device.sim import start_sim
from tinydeploy.facts import load
from tinydeploy.report import page as report_html
from tinydeploy.report import plots
from tinydeploy.report.sections import deploy_sections
from tinydeploy.validation import validate, write_html

DATA = Path(__file__).parent / "data"
DIGITS = DATA / "digits_cnn.tflite"
RAW = ("True", "False", "None", "{", "}", "nan", "metric.", "sizes_bytes")


class _Text(HTMLParser):
    """Text nodes of a page, per element (style/script skipped); h2 headings."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[str] = []
        self.h2: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag

    def handle_data(self, data: str) -> None:
        if self._tag in ("style", "script") or not data.strip():
            return
        self.nodes.append(data.strip())
        if self._tag == "h2":
            self.h2.append(data.strip())


def _text(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def _section(page: str, title: str) -> str:
    """The HTML between the <h2> ``title`` and the next <h2>."""
    start = page.index(f"<h2>{title}")
    end = page.find("<h2>", start + 4)
    return page[start:end if end > 0 else None]


def _no_raw_values(page: str) -> None:
    for node in _text(page).nodes:
        for raw in RAW:
            assert raw not in node.split() and not (raw in "{}" and raw in node), (raw, node)


def _digits_npz(run) -> Path:  # noqa: ANN001 -- conftest ExampleRun
    return Path(run.data_npz)


def test_digits_report_has_confusion_matrix_and_per_class_table(digits_run,
                                                                tmp_path: Path) -> None:
    r = validate(digits_run.int8_tflite, _digits_npz(digits_run), tmp_path, board="sim",
                 samples=80)
    assert r.passed
    doc = json.loads(r.paths["json"].read_text())
    cls = doc["report"]["classification"]
    assert cls["classes"] == 10
    host = np.array(cls["host"]["confusion"])
    assert host.shape == (10, 10) and host.sum() == 80
    # the diagonal is the accuracy the metrics report, per class rows are the supports
    assert np.trace(host) / 80 == pytest.approx(doc["metrics"]["accuracy_host"])
    support = [row["support"] for row in cls["device"]["per_class"]]
    assert support == host.sum(axis=1).tolist()
    page = r.paths["html"].read_text()
    text = _text(page)
    assert "Per class" in text.h2 and "Latency" in text.h2 and "Serial link" in text.h2
    per_class = _section(page, "Per class")
    # host and device agree on every class: one matrix, one set of per-class columns
    assert cls["agree"] and cls["host"] == cls["device"]
    assert "Confusion matrix, host and device (identical predictions) vs labels" in per_class
    assert "Confusion matrix, device vs labels" not in per_class
    for head in ("precision", "recall", "F1", "support"):
        assert f"<th>{head}</th>" in per_class
    assert per_class.count("class='diag'") == 10  # one matrix's diagonal
    # header facts
    summary = _section(page, "Summary")
    for needle in ("PASS: all 80 samples bit-exact", "tinydeploy version", "command line",
                   "model SHA-256", load(digits_run.int8_tflite).sha256, "UTC"):
        assert needle in summary, needle
    assert "p90" in page and "p99" in page
    assert doc["report"]["latency"]["unit"] == "µs"
    assert set(doc["report"]["latency"]["stats"]) >= {"min", "median", "p90", "p99", "max"}
    assert {"retransmits", "crc_errors", "resets", "timeouts"} <= set(doc["report"]["link"])
    assert Path(doc["paths"]["html"]).is_absolute() and Path(doc["data"]).is_absolute()


def test_report_text_has_no_raw_dicts_or_python_booleans(digits_run, tmp_path: Path) -> None:
    r = validate(digits_run.int8_tflite, _digits_npz(digits_run), tmp_path, board="sim",
                 samples=20)
    facts = load(digits_run.int8_tflite)
    extra = deploy_sections("digits", "sim", Path(digits_run.int8_tflite),
                            _digits_npz(digits_run), {"train": 1.5, "quantize": 2.0},
                            digits_run.train.to_dict(), digits_run.quant.to_dict(),
                            {}, {}, ["train"])
    page = write_html(r, facts, extra=extra).read_text()
    _no_raw_values(page)
    quant = _section(page, "Quantization")
    assert "accuracy, Keras float" in quant and " %<" in quant and "B<" in quant
    assert "up to date, reused" in _section(page, "Stage timings")


def test_fault_injected_run_lists_the_differing_samples(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from tinydeploy.data import Dataset

    d = load_digits()
    x = (d.images[:120] / 16.0).astype(np.float32)[..., None]
    y = d.target[:120].astype(np.float32)
    npz = Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(
        tmp_path / "d.npz")
    with start_sim(DIGITS, wrong_outputs=0.3, seed=4) as sim:
        r = validate(DIGITS, npz, tmp_path / "v", port=sim.port, samples=40)
        sim.stop()
        wrong = sorted(sim.stats()["wrong"])
    assert not r.passed and r.differing == len(wrong) > 0
    dif = json.loads(r.paths["json"].read_text())["report"]["differing"]
    assert dif["count"] == len(wrong)
    assert [row["index"] for row in dif["rows"]] == wrong[:20]
    row = dif["rows"][0]
    assert row["max_lsb"] == 1 and len(row["expected"]) == len(row["got"]) == 10
    assert max(abs(a - b) for a, b in zip(row["expected"], row["got"], strict=True)) == 1
    page = r.paths["html"].read_text()
    table = _section(page, "Differing samples")
    assert f"{len(wrong)} samples exceed the tolerance of 0 LSB" in table
    for i in wrong[:20]:
        assert f"<td>{i}</td>" in table
    assert table.count("<b>") == len(wrong[:20])  # one perturbed value per sample, in bold
    assert "FAIL:" in _section(page, "Summary")
    _no_raw_values(page)


def test_link_counters_count_corruption(tmp_path: Path) -> None:
    from tinydeploy.data import Dataset

    x = np.linspace(0, 6, 40, dtype=np.float32)[:, None]
    npz = Dataset(x_train=x, y_train=np.sin(x), x_val=x, y_val=np.sin(x), x_test=x,
                  y_test=np.sin(x)).save(tmp_path / "s.npz")
    with start_sim(DATA / "sine_mlp.tflite", corrupt=0.005, seed=3) as sim:
        r = validate(DATA / "sine_mlp.tflite", npz, tmp_path / "v", port=sim.port, samples=40)
    link = r.report["link"]
    assert r.passed
    assert link["retransmits"] > 0 and link["crc_errors"] + link["rejected"] > 0, link
    assert "requests resent" in _section(r.paths["html"].read_text(), "Serial link")
    assert "predicted vs true" in r.paths["html"].read_text()  # a regressor's plot


@pytest.mark.skipif(any(shutil.which(t) is None for t in
                        ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")),
                    reason="qemu-cm4 needs arm-none-eabi-gcc and qemu-system-arm "
                           "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                           "qemu-system-arm)")
def test_qemu_report_shows_instructions_not_microseconds(tmp_path: Path) -> None:
    from tinydeploy.data import Dataset

    x = np.load(DATA / "digits_cnn.inputs.npy")[:8]
    xf = ((x.astype(np.float32) + 128) / 255.0).reshape(len(x), 8, 8, 1)
    y = np.zeros(len(x), np.float32)
    npz = Dataset(x_train=xf, y_train=y, x_val=xf, y_val=y, x_test=xf, y_test=y).save(
        tmp_path / "d.npz")
    r = validate(DIGITS, npz, tmp_path / "v", board="qemu-cm4")
    doc = json.loads(r.paths["json"].read_text())
    lat = doc["report"]["latency"]
    assert lat["unit"] == "instructions" and lat["stats"]["min"] > 1000
    assert "latency_us" not in doc["metrics"] and doc["metrics"]["instructions"]
    page = r.paths["html"].read_text()
    text = " ".join(_text(page).nodes)
    assert "µs" not in text and "MHz" not in text
    assert "Latency (emulated instructions, not time)" in text
    assert "emulated instructions per inference" in page  # the histogram's axis caption
    memory = _section(page, "Memory")
    assert "flash (.text + .data), qemu ELF" in memory and "tensor arena, used" in memory
    assert doc["report"]["memory"]["elf"]["text"] > 0
    assert "latency (instructions)" in r.summary()
    head = doc["report"]["headline"]  # the answer first, in the board's unit
    assert head["latency"]["unit"] == "instructions" and head["latency"]["per_mac"] > 1
    assert head["ram"]["bytes"] == doc["report"]["memory"]["elf"]["ram_bytes"]
    assert "instructions/MAC" in text and lat["clock"].startswith("none")


def test_latency_plot_clips_an_outlier_and_says_so() -> None:
    times = np.array([100] * 50 + [101] * 49 + [50_000])
    _, caption = plots._latency_figure(times, "µs")
    assert "clipped at p99" in caption and "1 slower sample" in caption
    _, plain = plots._latency_figure(np.array([100, 101, 102, 103]), "µs")
    assert "clipped" not in plain


def test_layers_from_validation_json_become_a_table() -> None:
    doc = {"passed": True, "samples": 1, "differing": 0, "tolerance_lsb": 0, "metrics": {},
           "device": {}, "report": {"layers": [
               {"index": 0, "op": "CONV_2D", "instructions": 1234, "share": 0.75},
               {"index": 1, "op": "SOFTMAX", "instructions": 411, "share": 0.25}]}}
    page = report_html.validation_page(doc, {}, [], "t")
    table = _section(page, "Per-layer cost")
    assert "<th>op</th>" in table and "<td>CONV_2D</td>" in table and "1\u202f234" in table
    doc["layers"] = doc.pop("report")["layers"]  # also at the top level of validation.json
    assert _section(report_html.validation_page(doc, {}, [], "t"), "Per-layer cost") == table


def test_values_are_formatted_for_people() -> None:
    fmt, pct = report_html.fmt, report_html.pct
    assert fmt(True) == "yes" and fmt(None) == "-" and fmt({"a_b": 1}) == "a b: 1"
    assert pct(0.93888) == "93.89 %" and fmt(1410080) == "1\u202f410\u202f080"
    assert fmt(3120, "B") == "3\u202f120 B"
