"""The figures of an evaluation, per structure and protocol: mean Dice and NSD, Dice per click, NoC@85/90,
area under the Dice curve, seconds per interaction, and the pipeline check's verdict."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, median

from .cvpr25 import CLICKS, SECONDS_PER_CLASS, STEPS, click_auc
from .metrics import area_under_curve, clicks_to_reach
from .run import CVPR25, CVPR25_CLASS, EvaluationRun

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
    result = {"cases": len(chosen), "dice_mean": _mean(r["dice"] for r in chosen),
              "dice_median": _median(r["dice"] for r in chosen), "nsd_mean": _mean(r["nsd"] for r in chosen)}
    f1 = [r.get("instance_f1") for r in chosen if r.get("instance_f1") is not None]
    if f1:
        result["instance_f1_mean"], result["instance_f1_cases"] = _mean(f1), len(f1)
    return result


def cvpr25_summary(rows: list[dict]) -> dict:
    """The challenge's figures per case (DSC_AUC, NSD_AUC over the 5 click steps, final DSC and NSD, with NSD in
    the challenge's spacing and in the true spacing), the time of each class against the 90 s limit, and means."""
    per_case = []
    for case in dict.fromkeys(r["case"] for r in rows if r["protocol"] == CVPR25):
        steps = sorted((r for r in rows if r["protocol"] == CVPR25 and r["case"] == case), key=lambda r: r["step"])
        dsc, nsd, geometric = ([r[k] or 0.0 for r in steps] for k in ("dice", "nsd", "nsd_geometric"))
        classes = {}
        for row in rows:
            if row["protocol"] == CVPR25_CLASS and row["case"] == case:
                entry = classes.setdefault(row["structure"], {"structure": row["structure"], "seconds": 0.0})
                entry["seconds"] = round(entry["seconds"] + (row["seconds"] or 0.0), 4)
        for entry in classes.values():
            entry["within_limit"] = entry["seconds"] <= SECONDS_PER_CLASS
        seconds = round(sum(r["seconds"] or 0.0 for r in steps), 4)
        per_case.append({"case": case, "classes": len(classes), "steps": len(steps),
                         "DSC_AUC": round(click_auc(dsc), 6), "NSD_AUC": round(click_auc(nsd), 6),
                         "DSC_Final": dsc[-1], "NSD_Final": nsd[-1],
                         "NSD_AUC_geometric": round(click_auc(geometric), 6), "NSD_Final_geometric": geometric[-1],
                         "DSC_per_step": dsc, "NSD_per_step": nsd, "seconds": seconds,
                         "seconds_limit": SECONDS_PER_CLASS * len(classes),
                         "within_limit": seconds <= SECONDS_PER_CLASS * len(classes),
                         "per_class": list(classes.values())})
    figures = ("DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final", "NSD_AUC_geometric", "NSD_Final_geometric", "seconds")
    return {"cases": len(per_case), "clicks": CLICKS, "steps": STEPS, "seconds_per_class_limit": SECONDS_PER_CLASS,
            "mean": {k: _mean(c[k] for c in per_case) for k in figures}, "per_case": per_case}


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
        if is_interaction(row) and row["protocol"] != CVPR25:  # a cvpr25 row sums its classes' rows
            by_protocol[row["protocol"]].append(row)
    return {protocol: {"interactions": len(chosen), "seconds_mean": _mean(r["seconds"] for r in chosen),
                       "encode_seconds_mean": _mean(r["encode_seconds"] for r in chosen),
                       "decode_seconds_mean": _mean(r["decode_seconds"] for r in chosen)}
            for protocol, chosen in by_protocol.items()}


def pipeline_check(rows: list[dict]) -> dict:
    """Dice at the first click of every case × structure (or, without the clicks protocol, at the cvpr25 box);
    compact structures must reach 0.95."""
    first = "clicks" if any(r["protocol"] == "clicks" for r in rows) else CVPR25_CLASS
    results = [{"case": r["case"], "structure": r["structure"], "dice_click_1": r["dice"], "compact": r["compact"],
                "prompt": "click 1" if first == "clicks" else "box"}
               for r in rows if r["protocol"] == first and r["step"] == 1]
    failures = [r for r in results if r["compact"] and (r["dice_click_1"] or 0.0) < PIPELINE_CHECK_DICE]
    return {"threshold": PIPELINE_CHECK_DICE, "passed": bool(results) and not failures, "failures": failures,
            "per_case": results}


def summarise(run: EvaluationRun) -> dict:
    own = [r for r in run.rows if r["protocol"] not in (CVPR25, CVPR25_CLASS)]
    structures = list(dict.fromkeys(r["structure"] for r in own))
    per_structure = {}
    for name in structures:
        rows = [r for r in own if r["structure"] == name]
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
    if CVPR25 in run.settings.protocols:
        summary["cvpr25"] = cvpr25_summary(run.rows)
    if run.settings.check_pipeline:
        summary["pipeline_check"] = pipeline_check(run.rows)
    return summary
