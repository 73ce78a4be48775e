"""The figures of an evaluation, per structure and protocol: mean Dice and NSD, Dice per click, NoC@85/90,
area under the Dice curve, seconds per interaction, and the pipeline check's verdict."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, median

from .metrics import area_under_curve, clicks_to_reach
from .run import EvaluationRun

PIPELINE_CHECK_DICE = 0.95
NOC_TARGETS = (0.85, 0.90)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(mean(values), 4) if values else None


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(median(values), 4) if values else None


def is_interaction(row: dict) -> bool:
    """A step where a prompt was sent (not a click left out because nothing was left to correct)."""
    return not str(row["prompt"]).startswith("none")


def click_curves(rows: list[dict]) -> dict[tuple[str, str], list[float | None]]:
    """(case, structure) -> Dice at click 1, 2, …"""
    curves: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        if row["protocol"] == "clicks":
            curves[(row["case"], row["structure"])].append(row["dice"])
    return dict(curves)


def _single_step(rows: list[dict], protocol: str) -> dict:
    chosen = [r for r in rows if r["protocol"] == protocol]
    return {"cases": len(chosen), "dice_mean": _mean(r["dice"] for r in chosen),
            "dice_median": _median(r["dice"] for r in chosen), "nsd_mean": _mean(r["nsd"] for r in chosen)}


def _clicks(rows: list[dict], max_clicks: int) -> dict:
    curves = [c for (case, name), c in click_curves(rows).items()]
    nsd_curves = defaultdict(list)
    for row in rows:
        if row["protocol"] == "clicks":
            nsd_curves[row["step"]].append(row["nsd"])
    result = {"cases": len(curves),
              "dice_per_click": [_mean(c[n] for c in curves if len(c) > n) for n in range(max_clicks)],
              "nsd_per_click": [_mean(nsd_curves[n]) for n in range(1, max_clicks + 1)],
              "auc_dice_mean": _mean(area_under_curve(c) for c in curves)}
    for target in NOC_TARGETS:
        name = f"noc{round(target * 100)}"
        counts = [clicks_to_reach(c, target, max_clicks) for c in curves]
        result[f"{name}_mean"] = _mean(counts)
        result[f"{name}_reached"] = sum(any(v is not None and v >= target for v in c) for c in curves)
    return result


def _seconds(rows: list[dict]) -> dict:
    by_protocol = defaultdict(list)
    for row in rows:
        if is_interaction(row):
            by_protocol[row["protocol"]].append(row)
    return {protocol: {"interactions": len(chosen), "seconds_mean": _mean(r["seconds"] for r in chosen),
                       "encode_seconds_mean": _mean(r["encode_seconds"] for r in chosen),
                       "decode_seconds_mean": _mean(r["decode_seconds"] for r in chosen)}
            for protocol, chosen in by_protocol.items()}


def pipeline_check(rows: list[dict]) -> dict:
    """Dice at the first click of every case × structure; compact structures must reach 0.95."""
    results = [{"case": r["case"], "structure": r["structure"], "dice_click_1": r["dice"], "compact": r["compact"]}
               for r in rows if r["protocol"] == "clicks" and r["step"] == 1]
    failures = [r for r in results if r["compact"] and (r["dice_click_1"] or 0.0) < PIPELINE_CHECK_DICE]
    return {"threshold": PIPELINE_CHECK_DICE, "passed": bool(results) and not failures, "failures": failures,
            "per_case": results}


def summarise(run: EvaluationRun) -> dict:
    structures = list(dict.fromkeys(r["structure"] for r in run.rows))
    per_structure = {}
    for name in structures:
        rows = [r for r in run.rows if r["structure"] == name]
        entry = {}
        for protocol in ("text", "box"):
            if protocol in run.settings.protocols:
                entry[protocol] = _single_step(rows, protocol)
        if "clicks" in run.settings.protocols:
            entry["clicks"] = _clicks(rows, run.settings.max_clicks)
        phrases = sorted({r["phrase"] for r in rows if r["phrase"]})
        notes = sorted({r["note"] for r in rows if r["note"]})
        if phrases or notes:
            entry["text_phrases"], entry["text_notes"] = phrases, notes
        per_structure[name] = entry
    summary = {"dataset": run.dataset, "backend": run.backend, "settings": run.settings.as_dict(),
               "structures": per_structure, "seconds_per_interaction": _seconds(run.rows),
               "skipped": run.skipped, "rows": len(run.rows)}
    if run.settings.check_pipeline:
        summary["pipeline_check"] = pipeline_check(run.rows)
    return summary
