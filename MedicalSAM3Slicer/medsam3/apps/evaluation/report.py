"""The evaluation's files: ``results.csv`` (one row per case × structure × step), ``summary.json``, two PNG plots
(Dice against clicks per structure; Dice per structure and protocol as box plots) and ``report.md`` that puts
plots and a table together. All of them appear at once, whole (or none does)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ...files.atomic_files import AtomicOutputs
from ...errors import MedSam3Error
from .run import ROW_FIELDS, EvaluationRun
from .summary import NOC_TARGETS, click_curves, summarise

CSV_NAME, SUMMARY_NAME, REPORT_NAME = "results.csv", "summary.json", "report.md"
CLICKS_PLOT, BOX_PLOT = "dice_vs_clicks.png", "dice_by_structure.png"


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in ROW_FIELDS})


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError as error:
        raise MedSam3Error("The report's plots need matplotlib: install it with pip install -r "
                           "requirements/evaluation.txt (matplotlib==3.11.2).") from error

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_dice_against_clicks(rows: list[dict], max_clicks: int, path: Path, title: str) -> None:
    figure = _figure(6.4, 4.0)
    axes = figure.add_subplot()
    curves = click_curves(rows)
    for name in dict.fromkeys(structure for _, structure in curves):
        per_case = [c for (_, s), c in curves.items() if s == name]
        means = []
        for n in range(max_clicks):
            values = [c[n] for c in per_case if len(c) > n and c[n] is not None]
            means.append(sum(values) / len(values) if values else float("nan"))
        axes.plot(range(1, max_clicks + 1), means, marker="o", label=f"{name} (n={len(per_case)})")
    for target in NOC_TARGETS:
        axes.axhline(target, color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="clicks", ylabel="mean Dice", ylim=(0, 1.02), xticks=range(1, max_clicks + 1), title=title)
    axes.legend(fontsize="small", loc="lower right")
    axes.grid(alpha=0.3)
    figure.savefig(path)


def plot_dice_by_structure(rows: list[dict], protocols: tuple[str, ...], max_clicks: int, path: Path,
                           title: str) -> None:
    groups = [("text", lambda r: r["protocol"] == "text"),
              ("click 1", lambda r: r["protocol"] == "clicks" and r["step"] == 1),
              (f"click {max_clicks}", lambda r: r["protocol"] == "clicks" and r["step"] == max_clicks),
              ("box", lambda r: r["protocol"] == "box")]
    if max_clicks == 1:
        del groups[2]
    groups = [g for g in groups if any(g[1](r) for r in rows)]
    structures = list(dict.fromkeys(r["structure"] for r in rows))
    figure = _figure(max(5.0, 1.1 * len(structures) * max(1, len(groups)) ** 0.5 + 2), 4.0)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(groups))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for g, (label, chosen) in enumerate(groups):
        data = [[r["dice"] for r in rows if r["structure"] == s and chosen(r) and r["dice"] is not None]
                for s in structures]
        positions = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(structures))]
        kept = [(p, d) for p, d in zip(positions, data) if d]
        if not kept:
            continue
        parts = axes.boxplot([d for _, d in kept], positions=[p for p, _ in kept], widths=width * 0.85,
                             patch_artist=True, manage_ticks=False)
        for box in parts["boxes"]:
            box.set(facecolor=colours[g % len(colours)], alpha=0.6)
        axes.plot([], [], color=colours[g % len(colours)], linewidth=6, alpha=0.6, label=label)
    axes.set_xticks(range(len(structures)), structures, rotation=20 if len(structures) > 4 else 0)
    axes.set(ylabel="Dice", ylim=(0, 1.02), title=title)
    axes.legend(fontsize="small", loc="lower right")
    axes.grid(axis="y", alpha=0.3)
    figure.savefig(path)


def _cell(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def markdown_report(summary: dict, plots: list[str]) -> str:
    backend, settings = summary["backend"], summary["settings"]
    lines = ["# medsam3 evaluate", "",
             f"Data `{summary['dataset']['path']}` ({summary['dataset']['format']}, {summary['dataset']['cases']} "
             f"case{'' if summary['dataset']['cases'] == 1 else 's'}); model **{backend['model']}** on {backend['device']} ({backend['transport']}).",
             f"Protocols {', '.join(settings['protocols'])}; up to {settings['max_clicks']} clicks in the "
             f"{settings['axis']} view; NSD tolerance {settings['tolerance_mm']:g} mm.", ""]
    check = summary.get("pipeline_check")
    if check:
        verdict = "**passed**" if check["passed"] else "**FAILED**"
        lines += [f"Pipeline check (label drawn as image, bright-region model): {verdict}: Dice at click 1 must "
                  f"be ≥ {check['threshold']} for compact structures.", ""]
        for failure in check["failures"]:
            lines.append(f"- {failure['case']} / {failure['structure']}: Dice {_cell(failure['dice_click_1'])}")
        lines.append("")
    lines += ["| structure | cases | text Dice | text NSD | box Dice | click 1 Dice | last click Dice | NoC@85 | "
              "NoC@90 | Dice AUC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in summary["structures"].items():
        text, box, clicks = entry.get("text", {}), entry.get("box", {}), entry.get("clicks", {})
        per_click = clicks.get("dice_per_click") or [None]
        cases = max(text.get("cases", 0), box.get("cases", 0), clicks.get("cases", 0))
        lines.append(f"| {name} | {cases} | {_cell(text.get('dice_mean'))} | {_cell(text.get('nsd_mean'))} | "
                     f"{_cell(box.get('dice_mean'))} | {_cell(per_click[0])} | {_cell(per_click[-1])} | "
                     f"{_cell(clicks.get('noc85_mean'), 1)} | {_cell(clicks.get('noc90_mean'), 1)} | "
                     f"{_cell(clicks.get('auc_dice_mean'), 2)} |")
    lines += ["", "| protocol | interactions | seconds | encoding | decoding |", "|---|---|---|---|---|"]
    for protocol, timing in summary["seconds_per_interaction"].items():
        lines.append(f"| {protocol} | {timing['interactions']} | {_cell(timing['seconds_mean'], 2)} | "
                     f"{_cell(timing['encode_seconds_mean'], 2)} | {_cell(timing['decode_seconds_mean'], 2)} |")
    if summary["skipped"]:
        lines += ["", "Not scored (absent from the case's ground truth): " + ", ".join(
            f"{s['case']} / {s['structure']}" for s in summary["skipped"]) + "."]
    lines += [""] + [f"![{plot}]({plot})" for plot in plots] + [
        "", "Dice and NSD per case × structure × step are in `results.csv`; `summary.json` has these figures. "
        "Rules: a structure absent from a case's ground truth is not scored; an empty prediction of a present "
        "structure scores 0. NoC counts the clicks to reach the Dice (the whole budget when never reached); the "
        "Dice AUC is the trapezoidal area over clicks 1…N. docs/evaluation.md explains the protocol.", ""]
    return "\n".join(lines)


def write_report(run: EvaluationRun, output: Path) -> tuple[dict, list[Path]]:
    """Write every result file into ``output``; returns the summary and the files."""
    summary = summarise(run)
    title = "pipeline check" if run.settings.check_pipeline else run.backend.get("model", "")
    with AtomicOutputs() as outputs:
        write_csv(run.rows, outputs.path_for(output / CSV_NAME))
        outputs.path_for(output / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        plots = []
        if run.rows and "clicks" in run.settings.protocols:
            plot_dice_against_clicks(run.rows, run.settings.max_clicks, outputs.path_for(output / CLICKS_PLOT),
                                     f"Dice against clicks ({title})")
            plots.append(CLICKS_PLOT)
        if run.rows:
            plot_dice_by_structure(run.rows, run.settings.protocols, run.settings.max_clicks,
                                   outputs.path_for(output / BOX_PLOT), f"Dice per structure ({title})")
            plots.append(BOX_PLOT)
        outputs.path_for(output / REPORT_NAME).write_text(markdown_report(summary, plots), encoding="utf-8")
        written = [output / name for name in (CSV_NAME, SUMMARY_NAME, *plots, REPORT_NAME)]
    return summary, written
