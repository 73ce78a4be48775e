"""The evaluation's files: ``results.csv`` (one row per case × structure × step), ``summary.json``, two PNG plots
(Dice against clicks per structure; Dice per structure and protocol as box plots) and ``report.md`` that puts
plots and a table together. All of them appear at once, whole (or none does)."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

from ...files.atomic_files import AtomicOutputs
from ...errors import missing_extra
from .run import CVPR25, CVPR25_CLASS, ROW_FIELDS, EvaluationRun
from .summary import NOC_TARGETS, click_curves, summarise

CSV_NAME, SUMMARY_NAME, REPORT_NAME = "results.csv", "summary.json", "report.md"
CLICKS_PLOT, BOX_PLOT = "dice_vs_clicks.png", "dice_by_structure.png"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting like a formula (= + - @ tab CR, e.g. a structure
    named "=HYPERLINK(...)") gets a leading apostrophe, as OWASP advises; numbers are left as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(row.get(k)) for k in ROW_FIELDS})


def md_text(value) -> str:
    """Text from the data (names, case ids, paths, the model) as literal text in Markdown: HTML special characters
    become entities, Markdown punctuation is backslash-escaped, line breaks become spaces."""
    text = html.escape(" ".join(str(value).split()), quote=True)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text)


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError as error:
        raise missing_extra(error, "The evaluation report's plots") or error

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
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, (int, float)) else md_text(value)


def cvpr25_tables(figures: dict) -> list[str]:
    """The challenge's figures in its results layout: one row per case, then the mean."""
    lines = [f"## CVPR 2025 interactive 3D challenge protocol (box + {figures['clicks']} clicks)", "",
             "The challenge's metrics table (`CVPR25_iter_eval.py`), per case:", "",
             "| CaseName | num_class | DSC_AUC | NSD_AUC | DSC_Final | NSD_Final | TotalRunningTime | "
             "runtime_upperbound |", "|---|---|---|---|---|---|---|---|"]
    for case in figures["per_case"]:
        lines.append(f"| {md_text(case['case'])} | {case['classes']} | {_cell(case['DSC_AUC'], 4)} | "
                     f"{_cell(case['NSD_AUC'], 4)} | {_cell(case['DSC_Final'], 4)} | {_cell(case['NSD_Final'], 4)} | "
                     f"{_cell(case['seconds'], 2)} | {case['seconds_limit']:g} |")
    mean = figures["mean"]
    lines += [f"| **mean** ({figures['cases']} cases) | | {_cell(mean['DSC_AUC'], 4)} | "
              f"{_cell(mean['NSD_AUC'], 4)} | {_cell(mean['DSC_Final'], 4)} | {_cell(mean['NSD_Final'], 4)} | "
              f"{_cell(mean['seconds'], 2)} | |", "",
              "NSD as the challenge's script computes it (the .npz spacing as stored, onto the (D, H, W) array); with "
              f"the true spacing: NSD_AUC {_cell(mean['NSD_AUC_geometric'], 4)}, NSD_Final "
              f"{_cell(mean['NSD_Final_geometric'], 4)} (mean). DSC_AUC and NSD_AUC are areas over the 5 click steps "
              "(at most 4); NSD is 0 at a step whose class-averaged DSC is <= 0.2.", ""]
    slow = [f"{md_text(case['case'])} / {md_text(c['structure'])} {c['seconds']:.1f} s"
            for case in figures["per_case"] for c in case["per_class"] if not c["within_limit"]]
    lines += ["Time per class (all 6 steps) against the challenge's 90 s limit: " +
              ("every class within it." if not slow else "over it: " + ", ".join(slow) + "."), ""]
    return lines


def markdown_report(summary: dict, plots: list[str]) -> str:
    backend, settings = summary["backend"], summary["settings"]
    cases = summary['dataset']['cases']
    lines = ["# medsam3 evaluate", "",
             f"Data {md_text(summary['dataset']['path'])} ({md_text(summary['dataset']['format'])}, {cases} "
             f"case{'' if cases == 1 else 's'}); model **{md_text(backend['model'])}** on "
             f"{md_text(backend['device'])} ({md_text(backend['transport'])}).",
             f"Protocols {', '.join(settings['protocols'])}; up to {settings['max_clicks']} clicks in the "
             f"{settings['axis']} view; NSD tolerance {settings['tolerance_mm']:g} mm.", ""]
    check = summary.get("pipeline_check")
    if check:
        verdict = "**passed**" if check["passed"] else "**FAILED**"
        first = check["per_case"][0]["prompt"] if check["per_case"] else "click 1"
        lines += [f"Pipeline check (label drawn as image, bright-region model): {verdict}: Dice at {first} must "
                  f"be ≥ {check['threshold']} for compact structures.", ""]
        for failure in check["failures"]:
            lines.append(f"- {md_text(failure['case'])} / {md_text(failure['structure'])}: Dice "
                         f"{_cell(failure['dice_click_1'])}")
        lines.append("")
    if "cvpr25" in summary:
        lines += cvpr25_tables(summary["cvpr25"])
    if summary["structures"]:
        lines += ["| structure | cases | text Dice | text NSD | text instance F1 | box Dice | click 1 Dice | "
                  "last click Dice | NoC@85 | NoC@90 | Dice AUC |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in summary["structures"].items():
        text, box, clicks = entry.get("text", {}), entry.get("box", {}), entry.get("clicks", {})
        per_click = clicks.get("dice_per_click") or [None]
        cases = max(text.get("cases", 0), box.get("cases", 0), clicks.get("cases", 0))
        lines.append(f"| {md_text(name)} | {cases} | {_cell(text.get('dice_mean'))} | {_cell(text.get('nsd_mean'))} "
                     f"| {_cell(text.get('instance_f1_mean'))} | {_cell(box.get('dice_mean'))} | "
                     f"{_cell(per_click[0])} | {_cell(per_click[-1])} | {_cell(clicks.get('noc85_mean'), 1)} | "
                     f"{_cell(clicks.get('noc90_mean'), 1)} | {_cell(clicks.get('auc_dice_mean'), 2)} |")
    lines += [""] if summary["structures"] else []
    lines += ["| protocol | interactions | seconds | encoding | decoding |", "|---|---|---|---|---|"]
    for protocol, timing in summary["seconds_per_interaction"].items():
        lines.append(f"| {md_text(protocol)} | {timing['interactions']} | {_cell(timing['seconds_mean'], 2)} | "
                     f"{_cell(timing['encode_seconds_mean'], 2)} | {_cell(timing['decode_seconds_mean'], 2)} |")
    if summary["skipped"]:
        lines += ["", "Not scored (absent from the case's ground truth): " + ", ".join(
            f"{md_text(s['case'])} / {md_text(s['structure'])}" for s in summary["skipped"]) + "."]
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
    own = [r for r in run.rows if r["protocol"] not in (CVPR25, CVPR25_CLASS)]  # the plots show these
    with AtomicOutputs() as outputs:
        write_csv(run.rows, outputs.path_for(output / CSV_NAME))
        outputs.path_for(output / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        plots = []
        if own and "clicks" in run.settings.protocols:
            plot_dice_against_clicks(own, run.settings.max_clicks, outputs.path_for(output / CLICKS_PLOT),
                                     f"Dice against clicks ({title})")
            plots.append(CLICKS_PLOT)
        if own:
            plot_dice_by_structure(own, run.settings.protocols, run.settings.max_clicks,
                                   outputs.path_for(output / BOX_PLOT), f"Dice per structure ({title})")
            plots.append(BOX_PLOT)
        outputs.path_for(output / REPORT_NAME).write_text(markdown_report(summary, plots), encoding="utf-8")
        written = [output / name for name in (CSV_NAME, SUMMARY_NAME, *plots, REPORT_NAME)]
    return summary, written
