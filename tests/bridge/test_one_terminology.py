"""One terminology: every spelling of the table, and every synonym of the model's vocabulary, gets the same segment
name and SNOMED CT codes in the Slicer module as in `medsam3 segment` / `medsam3 batch`, the model is asked for the
same class on both paths, and the code is that class's code ("sin kidney" -> the model's "Left kidney", coded
Kidney + Left)."""

from __future__ import annotations

import pytest

from slicer_scene import slicer

from medsam3.files.outputs import coded_segment
from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.bright_region_model import BrightRegionModel
from medsam3.model.vocabulary import medical_sam3_vocabulary
from medsam3.terminology import parse_serialized

from MedicalSAM3SlicerLib.terminology import apply_to_segment, codes_of_tag, default_table, segment_tag


def every_typed_name() -> list[str]:
    vocabulary = medical_sam3_vocabulary()
    with_sides = [f"{side} {name}" for name in vocabulary.names for side in ("sin", "dex", "L", "Rt")
                  if not any(vocabulary.is_side(word) for word in name.split())]  # not "L Left kidney"
    synonyms = [s for spellings in vocabulary_synonyms().values() for s in spellings]
    return sorted(set(default_table().spellings() + vocabulary.names + synonyms + with_sides))


def vocabulary_synonyms() -> dict[str, list[str]]:
    import json

    from medsam3.model.vocabulary import VOCABULARY_PATH

    return json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))["synonyms"]


def slicer_path(typed: str) -> tuple[str, tuple, str]:
    """What the Slicer module does: the segment named, coloured and tagged from the terminology (read back through
    Slicer's own deserializer), and the model asked for what the module sends (the terminology's name for it)."""
    terminology = default_table().resolve(typed)
    segment = slicer.vtkSegment()
    apply_to_segment(segment, terminology)
    return segment.GetName(), codes_of_tag(segment_tag(segment)), medical_sam3_vocabulary().match(
        terminology.model_text).model_text


def command_line_path(typed: str, engine: SegmentationEngine) -> tuple[str, tuple, str]:
    """What `medsam3 segment` and `medsam3 batch` do: the engine writer's segment (its serialized entry parsed back),
    and the engine's text path asked for the phrase as typed."""
    segment = coded_segment(typed, 0)
    _, category, type_, modifier = parse_serialized(segment.serialized())
    return segment.name, (category, type_, modifier), engine.model_text(typed).model_text


def test_every_synonym_gets_one_name_one_code_and_the_code_of_the_class_the_model_is_asked_for():
    engine = SegmentationEngine(BrightRegionModel(image_size=252, mask_grid=63))
    typed_names = every_typed_name()
    assert len(typed_names) > 300 and "sin kidney" in typed_names
    disagreements = []
    for typed in typed_names:
        in_slicer, on_command_line = slicer_path(typed), command_line_path(typed, engine)
        if in_slicer != on_command_line:
            disagreements.append(f"{typed!r}: Slicer {in_slicer} != command line {on_command_line}")
            continue
        name, codes, model_class = in_slicer
        class_entry = default_table().lookup(model_class)
        if class_entry is not None and codes != (class_entry.category, class_entry.type, class_entry.modifier):
            disagreements.append(f"{typed!r}: coded {codes[1][2]} {codes[2][2]}, but the model is asked for "
                                 f"{model_class!r} ({class_entry.name})")
    assert disagreements == []


@pytest.mark.parametrize("typed", ["sin kidney", "kidney sin", "L kidney", "left kidney", "Kidney, left"])
def test_sin_kidney_is_left_kidney_everywhere(typed):
    engine = SegmentationEngine(BrightRegionModel(image_size=252, mask_grid=63))
    name, (category, type_, modifier), model_class = command_line_path(typed.replace(",", ""), engine)
    assert slicer_path(typed.replace(",", "")) == (name, (category, type_, modifier), model_class)
    assert (name, type_[1], modifier[2], model_class) == ("Left kidney", "64033007", "Left", "Left kidney")


def test_a_synonym_coded_apart_from_its_class_is_refused_when_the_vocabulary_loads():
    import json

    from medsam3.model.vocabulary import VOCABULARY_PATH, Vocabulary

    table = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    table["synonyms"]["Liver"] = ["hepar major"]  # Liver has a terminology entry: its synonyms live there
    with pytest.raises(ValueError, match="belongs in the terminology"):
        Vocabulary(table)


def test_a_side_word_after_a_comma_is_one_target_with_every_side_word_of_the_table():
    from medsam3.interaction.prompts import parse_text_targets

    assert parse_text_targets("kidney, sin, liver; lung, dex") == ["kidney, sin", "liver", "lung, dex"]
    assert [coded_segment(p, 0).name for p in ("kidney, sin", "lung, dex")] == ["Left kidney", "Right lung"]
