"""Typed target names as Slicer segments: the engine's terminology (``medsam3.terminology``, one table for the
Slicer module, ``medsam3 segment``, ``medsam3 batch`` and the model's vocabulary) applied to vtkSegments.

Only what needs Slicer is here: the segment's terminology tag in Slicer's own serialized form, setting a segment's
name, colour and tag, and reading a tag back into codes.
"""

from __future__ import annotations

from medsam3.terminology import (EMPTY_CODE, TABLE_PATH, Code, Terminology, TerminologyTable,  # noqa: F401
                                 default_table)

TERMINOLOGY_TAG = "TerminologyEntry"


def slicer_tag(terminology: Terminology) -> str:
    """The segment tag value in Slicer's terminology-entry format (context~category~type~modifier~...), written by
    Slicer's own serializer (the engine's :meth:`Terminology.serialized` writes the same string without Slicer)."""
    import slicer

    category, type_, modifier = terminology.category, terminology.type, terminology.modifier
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        terminology.context, category[1], category[0], category[2], type_[1], type_[0], type_[2],
        modifier[1], modifier[0], modifier[2], "", "", "", "", "", "", "")


def apply_to_segment(segment, terminology: Terminology) -> None:
    """Name, colour and terminology tag of a vtkSegment."""
    segment.SetName(terminology.name)
    segment.SetColor(*terminology.colour)
    segment.SetTag(TERMINOLOGY_TAG, slicer_tag(terminology))


def segment_tag(segment) -> str:
    """A vtkSegment's terminology tag ("" when it has none)."""
    import vtk

    value = vtk.reference("")
    segment.GetTag(TERMINOLOGY_TAG, value)
    return str(value)


def codes_of_tag(serialized: str) -> tuple[Code, Code, Code] | None:
    """(category, type, modifier) codes of a serialized Slicer terminology entry; None when there is none."""
    import slicer

    if not serialized:
        return None
    entry = slicer.vtkSlicerTerminologyEntry()
    if not slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(serialized, entry):
        return None

    def code(concept) -> Code:
        return (concept.GetCodingSchemeDesignator() or "", concept.GetCodeValue() or "", concept.GetCodeMeaning() or "")

    return code(entry.GetCategoryObject()), code(entry.GetTypeObject()), code(entry.GetTypeModifierObject())
