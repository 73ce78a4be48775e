"""Typed names resolve to one terminology entry however they are spelled; unknown names still work, with a note."""

import pytest

from slicer_scene import slicer

from MedicalSAM3SlicerLib.terminology import default_table


@pytest.mark.parametrize("typed", ["L kidney", "kidney left", "left kidney", "Left Kidney", "  kidney,  LT "])
def test_spellings_of_left_kidney_are_one_entry(typed):
    terminology = default_table().resolve(typed)
    assert terminology.name == "Left kidney"
    assert terminology.type == ("SCT", "64033007", "Kidney")
    assert terminology.modifier == ("SCT", "7771000", "Left")
    assert terminology.category == ("SCT", "123037004", "Anatomical Structure")
    assert terminology.model_text == "left kidney"
    assert not terminology.note


@pytest.mark.parametrize("typed,name,code", [("liver", "Liver", "10200004"), ("Hepar", "Liver", "10200004"),
                                             ("R lung", "Right lung", "39607008"), ("tumour", "Tumor", "108369006"),
                                             ("left atrium", "Left atrium", "82471001")])
def test_common_names_and_synonyms(typed, name, code):
    terminology = default_table().resolve(typed)
    assert (terminology.name, terminology.type[1]) == (name, code)


def test_a_side_on_a_structure_that_has_none_is_not_invented():
    terminology = default_table().resolve("left liver")
    assert terminology.is_generic and terminology.modifier == ("", "", "")


def test_unknown_term_gets_the_generic_code_and_a_note():
    terminology = default_table().resolve("blob near the hilum")
    assert terminology.name == "Blob near the hilum"
    assert terminology.model_text == "blob near the hilum"
    assert terminology.type == ("SCT", "85756007", "Tissue")
    assert "not in the terminology table" in terminology.note


def test_terminology_tag_is_slicers_format_and_reads_back():
    tag = default_table().resolve("kidney L").slicer_tag()
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(tag, entry)
    assert entry.GetTypeObject().GetCodeValue() == "64033007"
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Left"
    assert entry.GetCategoryObject().GetCodingSchemeDesignator() == "SCT"
