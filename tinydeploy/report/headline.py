"""The answer first: the headline of a validation (verdict, accuracy host vs device,
latency in the board's unit, RAM, flash) and the diagnosis under it.

Diagnosis entries are ``{"kind", "level", "text"}`` with level ``cause`` (explains a
FAIL), ``warning`` (a PASS that needs a look: ``state`` becomes ``warning``) or ``note``.
Kinds: ``saturation`` (input values clipped to the quantized range), ``known_defect``
(a TFLM library defect reproduces the device's outputs, :mod:`tinydeploy.tflm_overrides`),
``known_difference`` (:mod:`tinydeploy.known_diffs`), ``rounding`` (every difference is
1 LSB, on most samples), ``float_reference`` (device vs the float model). The texts are
built here once and shown by the CLI summary, ``validation.json`` and the HTML page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .fmt import number, pct

SATURATION_WARN = 0.01  # more than 1 % of an input's values clipped: a warning
ROUNDING_SHARE = 0.5  # 1-LSB differences on at least half the samples: a rounding pattern


def saturation(fractions: Mapping[str, float], scales: Mapping[str, str] | None = None,
               threshold: float = SATURATION_WARN) -> list[dict[str, Any]]:
    """One warning per input whose clipped fraction exceeds ``threshold``.

    Args:
        fractions: input key (``x_test``) -> fraction of its values clipped when quantized.
        scales: input key -> text of the input's quantization (named in the warning).
        threshold: the fraction above which it is a warning.
    """
    out = []
    for key, frac in fractions.items():
        if frac > threshold:
            scale = f" ({scales[key]})" if scales and key in scales else ""
            out.append({"kind": "saturation", "level": "warning", "input": key,
                        "fraction": float(frac),
                        "text": f"{pct(frac, 1)} of the {key} values are clipped to the "
                                f"quantized input range{scale}: the data is scaled "
                                "differently from what the model was quantized for; "
                                "device and host agree on clipped data, but the accuracy "
                                "suffers -- scale the data as in training"})
    return out


def rounding(max_lsb: int, differing: int, samples: int, unit: str = "LSB"
             ) -> dict[str, Any] | None:
    """The 1-LSB-everywhere pattern: every difference is exactly one unit and at least
    ``ROUNDING_SHARE`` of the samples have one -- a rounding difference (the device rounds
    a requantization or an activation table differently), not a wrong model."""
    if max_lsb != 1 or not samples or differing < ROUNDING_SHARE * samples:
        return None
    return {"kind": "rounding", "level": "cause",
            "text": f"rounding: {differing} of {samples} samples differ, every difference is "
                    f"exactly 1 {unit} -- the device rounds differently from the host "
                    "reference (requantization or activation-table rounding of another "
                    "kernel version), the model itself computes right; --tolerance-lsb 1 "
                    "accepts it"}


def float_reference(cross: Mapping[str, Any]) -> dict[str, Any] | None:
    """A note comparing device and host (int8) against the float model (X-cross)."""
    dev, host = cross.get("device", {}), cross.get("host", {})
    if not dev:
        return None
    text = (f"against the float model ({cross.get('model', 'float .tflite')}): device "
            f"MAE {number(dev['mae'], 4)}, error mean {number(dev['mean'], 4)} / std "
            f"{number(dev['std'], 4)}")
    if host:
        same = abs(dev["mae"] - host["mae"]) <= 1e-9 * max(1.0, host["mae"])
        text += (f"; host int8 MAE {number(host['mae'], 4)}"
                 + (" (the same: the device adds no error to quantization's)" if same
                    else ""))
    return {"kind": "float_reference", "level": "note", "text": text}


def diagnose(passed: bool, samples: int, differing: int, metrics: Mapping[str, Any],
             saturated: Sequence[Mapping[str, Any]], defects: Sequence[Mapping[str, Any]],
             notes: Sequence[Mapping[str, Any]], cross: Mapping[str, Any] | None
             ) -> list[dict[str, Any]]:
    """Every diagnosis entry of one run, causes first."""
    out: list[dict[str, Any]] = []
    out += [{"kind": "known_defect", "level": "cause", "defect": d.get("defect"),
             "text": str(d.get("text", ""))} for d in defects]
    if not passed and not defects:
        r = rounding(int(metrics.get("max_abs_diff_lsb", 0)), differing, samples,
                     str(metrics.get("diff_unit", "LSB")))
        if r:
            out.append(r)
    out += [{"kind": "known_difference", "level": "note", "text": str(n.get("text", ""))}
            for n in notes]
    out += [dict(s) for s in saturated]
    f = float_reference(cross or {})
    if f:
        out.append(f)
    return out


def _latency(lat: Mapping[str, Any], macs: int) -> dict[str, Any]:
    st = lat.get("stats") or {}
    if not st:
        return {}
    unit, median = str(lat.get("unit", "µs")), float(st["median"])
    out: dict[str, Any] = {"median": median, "unit": unit}
    if unit == "instructions":
        out["text"] = f"{number(median)} instructions (median; emulated, no time)"
        per = median
    elif lat.get("below_resolution") and median == 0:
        out["text"] = "< 1 µs (median below the 1 µs timer)"
        per = 0.0
    else:
        text = f"{number(median)} µs" if median < 1000 else f"{number(median / 1000, 4)} ms"
        out["text"] = text + " (median)"
        per = float(lat["cycles"]["median"]) if lat.get("cycles") else 0.0
        if per:
            out["cycles"] = per
            out["text"] += f", {number(per)} cycles"
    if per and macs:
        out["per_mac"] = per / macs
        out["text"] += (f", {number(per / macs, 3)} "
                        f"{'instructions' if unit == 'instructions' else 'cycles'}/MAC")
    return out


def _memory(mem: Mapping[str, Any], model_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RAM, flash) of the headline: the firmware ELF's where the build recorded it, else
    the tensor arena and the model's size."""
    elf = mem.get("elf", {})
    if "ram_bytes" in elf:
        ram = {"bytes": elf["ram_bytes"], "what": ".data + .bss of the firmware"}
    elif mem.get("arena_used_bytes") or mem.get("arena_planned_bytes"):
        used = mem.get("arena_used_bytes") or mem.get("arena_planned_bytes")
        ram = {"bytes": used, "what": "tensor arena used; no firmware image measured"}
    else:
        ram = {}
    if "flash_bytes" in elf:
        flash = {"bytes": elf["flash_bytes"], "what": ".text + .data of the firmware"}
    elif model_bytes:
        flash = {"bytes": model_bytes, "what": "the model alone; no firmware image measured"}
    else:
        flash = {}
    for d in (ram, flash):
        if d:
            d["text"] = f"{number(d['bytes'])} B ({d['what']})"
    return ram, flash


def headline(passed: bool, samples: int, differing: int, explained: int,
             metrics: Mapping[str, Any], lat: Mapping[str, Any], mem: Mapping[str, Any],
             diagnosis: Sequence[Mapping[str, Any]], macs: int = 0, model_bytes: int = 0,
             ) -> dict[str, Any]:
    """The headline facts: ``state`` (pass | warning | fail), ``verdict`` text, accuracy
    (classifier) or MAE vs labels (regressor) host and device, latency, RAM, flash."""
    warnings = [d for d in diagnosis if d.get("level") == "warning"]
    state = "fail" if not passed else ("warning" if warnings else "pass")
    verdict = ("FAIL" if not passed else "PASS with warnings" if warnings else "PASS")
    within = samples - differing - explained
    text = (f"{verdict}: {within} of {samples} samples agree with the host"
            + (f", {explained} by a known TFLM version difference" if explained else "")
            + (f", {differing} differ" if differing else ""))
    out: dict[str, Any] = {"state": state, "verdict": verdict, "text": text,
                           "samples": samples, "differing": differing}
    if "accuracy_host" in metrics:
        out["accuracy"] = {"host": metrics["accuracy_host"],
                           "device": metrics["accuracy_device"],
                           "text": f"{pct(metrics['accuracy_host'])} host, "
                                   f"{pct(metrics['accuracy_device'])} device"}
    elif "mae_host" in metrics:
        out["mae"] = {"host": metrics["mae_host"], "device": metrics["mae_device"],
                      "text": f"MAE {number(metrics['mae_host'], 4)} host, "
                              f"{number(metrics['mae_device'], 4)} device"}
    latency = _latency(lat, macs)
    if latency:
        out["latency"] = latency
    ram, flash = _memory(mem, model_bytes)
    if ram:
        out["ram"] = ram
    if flash:
        out["flash"] = flash
    if macs:
        out["macs"] = macs
    return out


def reference_text(ref: Mapping[str, Any]) -> str:
    """The host reference a verdict was made against, in words: ``ref["text"]`` when the
    reference names itself (e.g. a fallback reference, :func:`tinydeploy.hostref.reference`),
    else package and version."""
    if ref.get("text"):
        return str(ref["text"])
    name = (f"{ref.get('package') or 'tflite-micro'} {ref.get('version') or '?'}"
            if ref.get("package") else str(ref.get("name", "?")))  # a stand-in: its name
    return name + (f", {ref['kernels']}" if ref.get("kernels") else "")


def lines(head: Mapping[str, Any], diagnosis: Sequence[Mapping[str, Any]]) -> list[str]:
    """The headline and diagnosis as text lines (the CLI summary's first lines)."""
    rows = [str(head.get("text", ""))]
    for key, name in (("accuracy", "accuracy"), ("mae", "vs labels"), ("latency", "latency"),
                      ("ram", "RAM"), ("flash", "flash")):
        if key in head:
            rows.append(f"  {name}: {head[key]['text']}")
    if head.get("reference"):
        rows.append(f"  against: {head['reference']}")
    rows += [f"  {d['level']}: {d['text']}" for d in diagnosis]
    return rows
