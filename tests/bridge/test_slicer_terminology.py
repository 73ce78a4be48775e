"""Typed names resolve to one terminology entry however they are spelled; unknown names still work, with a note."""

import pytest

from slicer_scene import slicer

from MedicalSAM3SlicerLib.terminology import default_table, slicer_tag


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
    tag = slicer_tag(default_table().resolve("kidney L"))
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(tag, entry)
    assert entry.GetTypeObject().GetCodeValue() == "64033007"
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Left"
    assert entry.GetCategoryObject().GetCodingSchemeDesignator() == "SCT"


GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER = "Segmentation category and type - DICOM master list"

# Where Slicer 5.10 lists each concept of the table, as read from its source
# (Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.json first, else
# ...-DICOM-Master.json): type code -> (list, category code, type meaning). Lesion is in neither list.
SLICER_LISTS = {
    '10200004': (GENERAL_ANATOMY, '123037004', 'Liver'),
    '78961009': (GENERAL_ANATOMY, '123037004', 'Spleen'),
    '64033007': (GENERAL_ANATOMY, '123037004', 'Kidney'),
    '23451007': (GENERAL_ANATOMY, '123037004', 'Adrenal gland'),
    '39607008': (GENERAL_ANATOMY, '123037004', 'Lung'),
    '15776009': (GENERAL_ANATOMY, '123037004', 'Pancreas'),
    '28231008': (GENERAL_ANATOMY, '123037004', 'Gallbladder'),
    '69695003': (GENERAL_ANATOMY, '123037004', 'Stomach'),
    '32849002': (GENERAL_ANATOMY, '123037004', 'Esophagus'),
    '38848004': (GENERAL_ANATOMY, '123037004', 'Duodenum'),
    '30315005': (GENERAL_ANATOMY, '123037004', 'Small Intestine'),
    '71854001': (GENERAL_ANATOMY, '123037004', 'Colon'),
    '89837001': (GENERAL_ANATOMY, '123037004', 'Bladder'),
    '41216001': (GENERAL_ANATOMY, '123037004', 'Prostate'),
    '80891009': (GENERAL_ANATOMY, '123037004', 'Heart'),
    '15825003': (GENERAL_ANATOMY, '123037004', 'Aorta'),
    '64131007': (DICOM_MASTER, '123037004', 'Inferior vena cava'),
    '32764006': (DICOM_MASTER, '123037004', 'Portal vein'),
    '44567001': (GENERAL_ANATOMY, '123037004', 'Trachea'),
    '69748006': (GENERAL_ANATOMY, '123037004', 'Thyroid'),
    '12738006': (GENERAL_ANATOMY, '123037004', 'Brain'),
    '71341001': (DICOM_MASTER, '123037004', 'Femur'),
    '2748008': (GENERAL_ANATOMY, '123037004', 'Spinal cord'),
    '82471001': (DICOM_MASTER, '123037004', 'Left atrium'),
    '108369006': (DICOM_MASTER, '49755003', 'Neoplasm'),
    '52988006': (None, None, None),
    '4147007': (GENERAL_ANATOMY, '49755003', 'Mass'),
    '367643001': (GENERAL_ANATOMY, '49755003', 'Cyst'),
    '79654002': (GENERAL_ANATOMY, '49755003', 'Edema'),
    '6574001': (GENERAL_ANATOMY, '49755003', 'Necrosis'),
}


def test_every_table_entry_uses_slicers_general_anatomy_entry_where_there_is_one():
    import json

    from MedicalSAM3SlicerLib.terminology import TABLE_PATH

    table = default_table()
    entries = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["entries"]
    assert {entry["type"][1] for entry in entries} == set(SLICER_LISTS)
    for entry in entries:
        terminology = table.resolve(entry["name"])
        context, category, meaning = SLICER_LISTS[terminology.type[1]]
        assert terminology.context == (context or ""), entry["name"]
        if context is not None:
            assert (terminology.category[1], terminology.type[2]) == (category, meaning), entry["name"]


def test_the_segment_tag_names_the_list_its_codes_come_from():
    for typed, context in (("bladder", GENERAL_ANATOMY), ("IVC", DICOM_MASTER), ("lesion", "")):
        entry = slicer.vtkSlicerTerminologyEntry()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(
            slicer_tag(default_table().resolve(typed)), entry)
        assert (entry.GetTerminologyContextName() or "") == context
