"""The end of ``medsam3 finetune``: the model folder (with its card and record) and the before/after report.

``report.md`` in the model folder puts Dice per structure of the base and the fine-tuned model side by side on the
held-out cases, twice: text on each held-out slice through the detector (what was trained, measured on the model
square), and ``medsam3 evaluate``'s text protocol through the whole volume (what a user gets; the tracker joins
in there), whose full results stay in ``evaluation/base`` and ``evaluation/fine-tuned``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ... import __version__

REPORT_NAME = "report.md"
RECORD_NAME = "finetune.json"


def _figure(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _dice_table(title: str, before: dict, after: dict, note: str) -> list[str]:
    lines = [f"## {title}", "", note, "", "| structure | base | fine-tuned |", "|---|---|---|"]
    lines += [f"| {name} | {_figure(before.get(name))} | {_figure(after.get(name))} |"
              for name in dict.fromkeys([*before, *after])]
    return lines + [""]


def _figures(dice: dict, key: str) -> dict:
    return {name: figures.get(key) for name, figures in dice.items()}


def _report(record: dict) -> str:
    lines = [f"# Fine-tuning report: {record['name']}", "",
             f"Base **{record['base']}**, {record['steps']} steps ({record['trained_parts']}), held-out cases: "
             f"{', '.join(record['held_out_cases']) or 'none'}.", "",
             f"{record['seconds_per_step']} s per step on {record['device']}, peak resident memory "
             f"{record['peak_resident_mb']} MB.", "",
             f"Loss: first step {_figure(record['losses'][0] if record['losses'] else None)}, mean of the last 10 "
             f"steps {_figure(statistics.fmean(record['losses'][-10:]) if record['losses'] else None)}.", ""]
    for key, title, note in (
            ("engine", "Held-out slices, text on each slice as the engine segments it",
             "Dice over every held-out slice holding the structure and as many without it; instances scoring at "
             "least 0.5 (query x presence) merged, on the model square."),
            ("best_instance", "Held-out slices, the best-scoring instance",
             "Dice of the best-scoring instance's mask over the held-out slices holding the structure, whatever "
             "its score: the mask quality of the detection.")):
        lines += _dice_table(title, _figures(record["held_out_dice_before"], key),
                             _figures(record["held_out_dice_after"], key), note)
    if "evaluation_text_dice_before" in record:
        lines += _dice_table("Held-out cases, `medsam3 evaluate --protocols text`",
                             record["evaluation_text_dice_before"], record["evaluation_text_dice_after"],
                             "Mean Dice per case through the whole volume with the model's text protocol "
                             "(details in evaluation/base and evaluation/fine-tuned).")
    return "\n".join(lines)


def finish(trainer, base, dataset, training, held_out, structures, output: Path, image_size: int, licence: str,
           before: dict, after: dict) -> dict:
    """Write the model folder; returns its record."""
    from ...training.model_folder import model_card, write_model_folder

    record = {"name": output.name, "medsam3_version": __version__, "base": base.name, "base_path": str(base.path),
              "data": str(Path(dataset.path).resolve()), "training_cases": [c.case_id for c in training],
              "held_out_cases": [c.case_id for c in held_out],
              "structures": [{"value": s.value, "name": s.name, "prompt": s.prompt} for s in structures],
              "steps": trainer.step, "accumulate": trainer.settings.accumulate, "seed": trainer.settings.seed,
              "trained_parts": _parts(trainer), "image_size": image_size, "licence": licence,
              "losses": [round(x, 6) for x in trainer.losses], "held_out_dice_before": before,
              "held_out_dice_after": after, "report": bool(held_out), "device": str(trainer.device),
              "seconds_per_step": round(trainer.seconds_timed / max(1, trainer.steps_timed), 4),
              "peak_resident_mb": _peak_resident_mb(), "tracker": _tracker_note(trainer, base.path)}
    trained = {name: value for name, value in trainer.model.state_dict().items()}
    files = {"README.md": model_card(record), RECORD_NAME: json.dumps(record, indent=2) + "\n"}
    if held_out:
        files[REPORT_NAME] = _report(record)
    write_model_folder(base.path, output, trained, files, image_size)
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name, {}), after.get(name, {})
        print(f"{name}: held-out slice Dice {_figure(old.get('engine'))} -> {_figure(new.get('engine'))}, best "
              f"instance {_figure(old.get('best_instance'))} -> {_figure(new.get('best_instance'))}")
    print(f"wrote {output}")
    return record


def _tracker_note(trainer, base_path: Path) -> str:
    """What the trackers keep. In a one-folder model the trackers read the detector's ViT, so a ViT trained with
    --train lora or all reaches clicks and propagation although every tracker tensor is unchanged."""
    from ...model.sam3.transformers_model import location_of

    shared = location_of(base_path, "sam3") == location_of(base_path, "sam3_tracker")
    if shared and trainer.settings.parts in ("merged", "all"):
        return ("every tracker tensor carried over unchanged, but the trackers share the detector's ViT, which was "
                "trained: clicks and propagation run on the adapted image features")
    return "carried over unchanged from the base model"


def _peak_resident_mb() -> float | None:
    """The process's peak resident memory so far (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _parts(trainer) -> str:
    from ...training.loop import HEAD_MODULES

    parts = trainer.settings.parts
    if parts == "all":
        return "all detector parameters"
    heads = ", ".join(HEAD_MODULES)
    return f"{heads} + LoRA on the ViT and text encoder (merged)" if parts == "merged" else heads


def _text_dice(dataset, case_ids: list[str], model: str, device: str, folder: Path, quiet: bool) -> dict:
    from ...transports.model_loading import load_backend
    from ..evaluation.datasets import Dataset
    from ..evaluation.run import EvaluationSettings, run_evaluation
    from ..evaluation.summary import summarise

    held_out = Dataset(dataset.path, dataset.format, dataset.structures,
                       [c for c in dataset.cases if c.case_id in case_ids])
    backend = load_backend(model, device, progress=not quiet)
    run = run_evaluation(held_out, backend, EvaluationSettings(protocols=("text",)), folder, restart=True,
                         show_progress=not quiet)
    summary = summarise(run)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {name: entry.get("text", {}).get("dice_mean") for name, entry in summary["structures"].items()}


def evaluate_before_and_after(dataset, case_ids: list[str], base_source: str, output: Path, device: str,
                              record: dict, quiet: bool = False) -> dict:
    """Run the text protocol of ``medsam3 evaluate`` with the base and the fine-tuned model on the held-out cases
    and add both to the report and the record."""
    record["evaluation_text_dice_before"] = _text_dice(dataset, case_ids, base_source, device,
                                                       output / "evaluation" / "base", quiet)
    record["evaluation_text_dice_after"] = _text_dice(dataset, case_ids, str(output), device,
                                                      output / "evaluation" / "fine-tuned", quiet)
    (output / REPORT_NAME).write_text(_report(record), encoding="utf-8")
    (output / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name in record["evaluation_text_dice_after"]:
        print(f"{name}: held-out text-protocol Dice {_figure(record['evaluation_text_dice_before'].get(name))} -> "
              f"{_figure(record['evaluation_text_dice_after'].get(name))}")
    print(f"wrote {output / REPORT_NAME}")
    return record
