"""Running an evaluation: every case × structure × protocol, with a progress line per case × structure (the
applications' one reporter, :mod:`..progress`, with the time left) and a journal so that a stopped run
resumes where it stopped.

The journal (``progress.jsonl`` in the output folder) starts with the run's settings and gets one line per
finished case × structure holding all its rows; a line cut short by a kill is ignored. A resumed run skips the
finished units (their cases are not even read) and, because rows are always written in the dataset's order,
ends with the same CSV as an uninterrupted run (timings aside).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
import numpy as np
from scipy import ndimage

from ...transports.backend import BackendInfo, LocalBackend, SegmentationBackend
from ..json_lines import JsonLines
from ..progress import Progress
from ...errors import MedSam3Error
from ...geometry.slicing import SliceAxis
from ...geometry.volume import Volume
from .click_simulator import ClickSimulator
from .datasets import Dataset, LoadedCase, Structure
from .cvpr25 import class_scores, case_scores, run_cvpr25, view_of_first_array_axis
from .metrics import DEFAULT_NSD_TOLERANCE_MM, dice, instance_f1, normalised_surface_distance
from .protocols import PROTOCOLS, EncodingClock, Step, run_box, run_clicks, run_text

JOURNAL = "progress.jsonl"
ROW_FIELDS = ("case", "structure", "label", "protocol", "step", "prompt", "dice", "nsd", "nsd_geometric",
              "instance_f1", "gt_voxels",
              "predicted_voxels", "seconds", "encode_seconds", "decode_seconds", "phrase", "note", "compact")
TIMING_FIELDS = ("seconds", "encode_seconds", "decode_seconds")
CVPR25, CVPR25_CLASS = "cvpr25", "cvpr25 class"  # rows: the case's figures per step; one class's per step
ALL_PROTOCOLS = PROTOCOLS + (CVPR25,)
CASE_UNIT = 0  # the journal's label for a case-wide unit (cvpr25); 0 is background, never a structure
MASKS = "masks"
PIPELINE_CHECK_IMAGE = "ground truth drawn as intensity (inside 1000, outside -1000)"


@dataclass(frozen=True)
class EvaluationSettings:
    protocols: tuple[str, ...] = PROTOCOLS
    max_clicks: int = 10
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    check_pipeline: bool = False
    axis: str = "axial"
    save_masks: bool = False

    def check(self) -> "EvaluationSettings":
        unknown = set(self.protocols) - set(ALL_PROTOCOLS)
        if unknown or not self.protocols:
            raise MedSam3Error(f"Unknown protocol {', '.join(sorted(unknown)) or '(none)'}: choose from "
                               f"{', '.join(ALL_PROTOCOLS)}.")
        if self.save_masks and CVPR25 not in self.protocols:
            raise MedSam3Error("--save-masks saves the label map after each step of the cvpr25 protocol: add cvpr25 "
                               "to --protocols.")
        if self.max_clicks < 1:
            raise MedSam3Error("--max-clicks must be at least 1.")
        if not self.tolerance_mm > 0:
            raise MedSam3Error("--nsd-tolerance must be a positive number of millimetres.")
        SliceAxis.parse(self.axis)
        return self

    def as_dict(self) -> dict:
        values = asdict(self)
        values["protocols"] = list(self.protocols)
        return values


@dataclass
class EvaluationRun:
    rows: list[dict]
    settings: EvaluationSettings
    backend: dict
    dataset: dict
    skipped: list[dict] = field(default_factory=list)


class JournalMismatch(MedSam3Error):
    """The output folder holds a run with other settings."""


# --- pipeline check ----------------------------------------------------------------------------------------------
def pipeline_check_backend() -> LocalBackend:
    """The engine's bright-region model: it segments the bright region under a prompt, so on an image that is
    the label drawn as intensity its answer is the ground truth, wherever the geometry is right."""
    from ...model.bright_region_model import BrightRegionModel
    from ...interaction.engine import SegmentationEngine

    return LocalBackend(SegmentationEngine(BrightRegionModel()),
                        BackendInfo(model="bright-region (pipeline check)", device="cpu", image_size=1008,
                                    notes=("--check-pipeline: each image is its label drawn as intensity",)))


def label_as_image(volume: Volume, mask: np.ndarray) -> Volume:
    return Volume(np.where(mask, 1000, -1000).astype(np.int16), volume.ijk_to_ras, modality="CT",
                  name=f"{volume.name} (label as image)")


def one_click_reach(truth: np.ndarray, simulator: ClickSimulator) -> np.ndarray:
    """The voxels an ideal one-click propagation recovers, computed on the voxels themselves: the 2D region
    under the first click, then slice by slice (both ways) every 2D region overlapping the previous slice's."""
    stack = simulator.geometry.as_slice_stack(truth)
    click = simulator.first_click(truth)
    _, row, column = simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int)
    reached = np.zeros(stack.shape, dtype=bool)
    regions, _ = ndimage.label(stack[click.slice_index])
    reached[click.slice_index] = regions == regions[row, column]
    for step in (1, -1):
        index = click.slice_index + step
        while 0 <= index < len(stack):
            regions, _ = ndimage.label(stack[index])
            hit = np.unique(regions[reached[index - step] & (regions > 0)])
            if hit.size == 0:
                break
            reached[index] = np.isin(regions, hit)
            index += step
    return reached


def is_compact(truth: np.ndarray, simulator: ClickSimulator) -> bool:
    """Whether one click should give the whole structure back in a pipeline check: an ideal slice-by-slice
    propagation from the first click reaches 99 % of it, and its largest cross-section is at least 4 × 4 pixels
    (smaller ones are below the model's mask resolution)."""
    reached = one_click_reach(truth, simulator)
    stack = simulator.geometry.as_slice_stack(truth)
    rows, columns = np.nonzero(stack[int(np.argmax(stack.sum(axis=(1, 2))))])
    return bool(reached.sum() >= 0.99 * truth.sum() and np.ptp(rows) >= 3 and np.ptp(columns) >= 3)


# --- one structure -----------------------------------------------------------------------------------------------
def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def evaluate_structure(backend: SegmentationBackend, case: LoadedCase, structure: Structure,
                       settings: EvaluationSettings, clock: EncodingClock) -> list[dict]:
    """Every protocol on one structure of one case, one row per step."""
    truth = case.labels == structure.value
    volume = label_as_image(case.volume, truth) if settings.check_pipeline else case.volume
    simulator = ClickSimulator(volume, settings.axis)
    compact = is_compact(truth, simulator)
    rows = []
    session = backend.open_session(volume)
    try:
        runs = {"text": lambda: run_text(session, structure.name, clock, simulator.axis),
                "clicks": lambda: run_clicks(session, simulator, truth, structure.name, settings.max_clicks, clock),
                "box": lambda: run_box(session, simulator, truth, structure.name, clock)}
        for protocol in PROTOCOLS:
            if protocol in settings.protocols:
                rows += [_row(case, structure, step, truth, settings, compact) for step in runs[protocol]()]
    finally:
        session.close()
    return rows


def _row(case: LoadedCase, structure: Structure, step: Step, truth: np.ndarray, settings: EvaluationSettings,
         compact: bool) -> dict:
    return {"case": case.case_id, "structure": structure.name, "label": structure.value, "protocol": step.protocol,
            "step": step.step, "prompt": step.prompt, "dice": _rounded(dice(truth, step.prediction), 6),
            "nsd": _rounded(normalised_surface_distance(truth, step.prediction, case.spacing_kji,
                                                        settings.tolerance_mm), 6), "nsd_geometric": None,
            "instance_f1": _text_instance_f1(truth, step),
            "gt_voxels": int(truth.sum()), "predicted_voxels": int(step.prediction.sum()),
            "seconds": _rounded(step.seconds, 4), "encode_seconds": _rounded(step.encode_seconds, 4),
            "decode_seconds": _rounded(step.decode_seconds, 4), "phrase": step.phrase, "note": step.note,
            "compact": bool(compact)}


def _text_instance_f1(truth: np.ndarray, step: Step) -> float | None:
    """The challenge's instance F1 (IoU 0.5) for typed text on a structure of several separate pieces (lesions
    under one label, 6-connected as the challenge splits a prediction); None for a structure of one piece."""
    if step.protocol != "text" or ndimage.label(truth)[1] < 2:
        return None
    return _rounded(instance_f1(truth, step.prediction)["f1"], 6)


# --- the CVPR 2025 challenge's protocol on one case -------------------------------------------------------------
def evaluate_cvpr25_case(backend: SegmentationBackend, case: LoadedCase, structures: list[Structure],
                         settings: EvaluationSettings, clock: EncodingClock, masks: Path | None,
                         npz: bool) -> list[dict]:
    """The challenge's chain on every class of one case: a "cvpr25" row per step (the case's figures, as the
    challenge scores them) and a "cvpr25 class" row per class and step; with ``masks``, each step's label map."""
    names = {s.value: s.name for s in structures}
    values = [int(v) for v in np.unique(case.labels) if v != 0]
    names.update({v: f"label {v}" for v in values if v not in names})

    def volume_for(value: int) -> Volume:
        return label_as_image(case.volume, case.labels == value) if settings.check_pipeline else case.volume

    view = view_of_first_array_axis(case.volume)
    compact = {v: is_compact(case.labels == v, ClickSimulator(case.volume, view)) for v in values}
    stored_spacing = tuple(reversed(case.spacing_kji))  # the .npz (x, y, z) numbers onto (D, H, W), as the script
    rows = []
    for step in run_cvpr25(backend, volume_for, case.labels, names, clock):
        scores = [class_scores(case.labels, step.segmentation, c.value, stored_spacing, case.spacing_kji,
                               settings.tolerance_mm) for c in step.classes]
        figures = case_scores(scores)
        if masks is not None:
            _save_mask(masks / case.case_id, step.step, step.segmentation, case.volume, npz)
        seconds = sum(c.seconds for c in step.classes)
        encoded = [c.encode_seconds for c in step.classes]
        encode = None if None in encoded else sum(encoded)
        rows.append({"case": case.case_id, "structure": "all classes", "label": None, "protocol": CVPR25,
                     "step": step.step, "prompt": "box" if step.step == 1 else f"click {step.step - 1}",
                     "dice": _rounded(figures["dice"], 6), "nsd": _rounded(figures["nsd"], 6),
                     "nsd_geometric": _rounded(figures["nsd_geometric"], 6), "instance_f1": None,
                     "gt_voxels": int((case.labels != 0).sum()),
                     "predicted_voxels": int((step.segmentation != 0).sum()),
                     "seconds": _rounded(seconds, 4), "encode_seconds": _rounded(encode, 4),
                     "decode_seconds": _rounded(None if encode is None else max(0.0, seconds - encode), 4),
                     "phrase": "", "note": "", "compact": None})
        for c, score in zip(step.classes, scores):
            rows.append({"case": case.case_id, "structure": names[c.value], "label": c.value,
                         "protocol": CVPR25_CLASS, "step": step.step, "prompt": c.prompt,
                         "dice": _rounded(score["dice"], 6), "nsd": _rounded(score["nsd"], 6),
                         "nsd_geometric": _rounded(score["nsd_geometric"], 6), "instance_f1": None,
                         "gt_voxels": int((case.labels == c.value).sum()),
                         "predicted_voxels": int((step.segmentation == c.value).sum()),
                         "seconds": _rounded(c.seconds, 4), "encode_seconds": _rounded(c.encode_seconds, 4),
                         "decode_seconds": _rounded(None if c.encode_seconds is None
                                                    else max(0.0, c.seconds - c.encode_seconds), 4),
                         "phrase": "", "note": "", "compact": bool(compact[c.value])})
    return rows


def _save_mask(folder: Path, step: int, segmentation: np.ndarray, volume: Volume, npz: bool) -> None:
    """``step<k>.npz`` holding ``segs`` (the challenge's output format) for .npz input, else a labelmap
    ``step<k>.nii.gz`` on the image's grid; written whole or not at all."""
    from ...files.volume_io import write_labelmap

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (f"step{step}.npz" if npz else f"step{step}.nii.gz")
    partial = folder / f".partial-{target.name}"
    if npz:
        with open(partial, "wb") as stream:
            np.savez_compressed(stream, segs=segmentation)
    else:
        write_labelmap(partial, segmentation, volume)
    os.replace(partial, target)


# --- the journal -------------------------------------------------------------------------------------------------
def _read_journal(journal: JsonLines, header: dict) -> dict[tuple[str, int], dict]:
    """Finished units of an earlier run with the same header; a different header is refused."""
    if not journal.path.exists():
        return {}
    entries = journal.records()
    if not entries or entries[0].get("header") != header:
        raise JournalMismatch(f"{journal.path.parent} holds an evaluation with other data or settings: give another "
                              "--output, or add --restart to start it over.")
    return {(e["case"], int(e["label"])): e for e in entries[1:] if "case" in e}


# --- the run -----------------------------------------------------------------------------------------------------
def run_evaluation(dataset: Dataset, backend: SegmentationBackend, settings: EvaluationSettings, output: Path,
                   restart: bool = False, show_progress: bool = True) -> EvaluationRun:
    """Evaluate every case × structure of ``dataset``; returns all rows in the dataset's order."""
    settings.check()
    output.mkdir(parents=True, exist_ok=True)
    info = backend.info()
    header = {"data": str(Path(dataset.path).resolve()), "format": dataset.format, "settings": settings.as_dict(),
              "model": info.model, "structures": [[s.value, s.name] for s in dataset.structures]}
    journal = JsonLines(output / JOURNAL, "its journal")
    if restart and journal.path.exists():
        journal.path.unlink()
    done = _read_journal(journal, header)
    journal.rewrite([{"header": header}, *done.values()])
    clock = EncodingClock(backend)
    per_structure = any(p in settings.protocols for p in PROTOCOLS)
    case_wide = CVPR25 in settings.protocols
    units = [(source, structure) for source in dataset.cases for structure in
             (dataset.structures if per_structure else []) + ([None] if case_wide else [])]

    def key(source, structure) -> tuple[str, int]:
        return source.case_id, CASE_UNIT if structure is None else structure.value

    masks = output / MASKS if settings.save_masks else None
    progress = Progress(sum(key(*u) not in done for u in units), quiet=not show_progress)
    try:
        for source in dataset.cases:
            pending = [u for u in units if u[0] is source and key(*u) not in done]
            if not pending:
                continue
            case = source.load()
            present = set(np.unique(case.labels).tolist())
            for _, structure in pending:
                started = time.perf_counter()
                if structure is None:
                    rows = evaluate_cvpr25_case(backend, case, dataset.structures, settings, clock, masks,
                                                dataset.format == "npz") if present - {0} else []
                    entry = {"case": source.case_id, "label": CASE_UNIT, "rows": rows}
                    if not rows:
                        entry["skipped"] = "no label in this case's ground truth"
                elif structure.value in present:
                    rows = evaluate_structure(backend, case, structure, settings, clock)
                    entry = {"case": source.case_id, "label": structure.value, "rows": rows}
                else:
                    entry = {"case": source.case_id, "label": structure.value, "rows": [],
                             "skipped": "not in this case's ground truth"}
                journal.append(entry)
                done[key(source, structure)] = entry
                reason = entry.get("skipped")
                unit = f"{source.case_id} {'cvpr25' if structure is None else structure.name}"
                progress.case_finished({"case": unit, "status": "skipped" if reason else "done",
                                        "notes": [reason] if reason else [], "seconds": time.perf_counter() - started})
    finally:
        clock.close()
    rows, skipped = [], []
    for source, structure in units:
        entry = done[key(source, structure)]
        rows += entry["rows"]
        if entry.get("skipped"):
            skipped.append({"case": source.case_id, "structure": "all classes" if structure is None
                            else structure.name, "reason": entry["skipped"]})
    return EvaluationRun(rows, settings, info.as_dict(), {"path": str(dataset.path), "format": dataset.format,
                                                          "cases": len(dataset.cases)}, skipped)
