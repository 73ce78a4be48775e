"""Typed names reach Medical SAM3's training vocabulary (AIM-Research-Lab/Medical-SAM3 eval_common.py
_TRAIN_QUERY_VOCAB): the model is asked for the class name, the segment keeps the typed name, and an unknown name
still runs with a one-line note naming the nearest trained names, in-process and through the server."""

import numpy as np
import pytest

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.model.bright_region_model import BrightRegionModel
from medsam3.apps.cli import main
from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import parse_text_targets
from medsam3.transports.remote_client import RemoteBackend
from medsam3.model.vocabulary import medical_sam3_vocabulary

from cases import load_case
from server_harness import API_KEY, running_server, write_nifti

TYPED_TO_TRAINED = {
    "L kidney": "Left kidney", "left kidney": "Left kidney", "kidney, left": "Left kidney",
    "Kidneys (right)": "Right kidney", "Rt kidney": "Right kidney",
    "hepatic tumour": "Liver tumors", "liver tumours": "Liver tumors", "HCC": "Liver tumors",
    "liver": "Liver", "SPLEEN": "Spleen", "oesophagus": "Esophagus", "gall bladder": "Gallbladder",
    "IVC": "Inferior vena cava", "svc": "Superior vena cava", "right adrenal": "Right adrenal gland",
    "adrenal gland, left": "Left adrenal gland", "LUL": "Lung upper lobe left",
    "right lower lobe": "Lung lower lobe right", "vertebra": "Vertebrae", "rib": "Ribs",
    "pancreatic tumour": "Pancreas tumors", "renal cyst, right": "Right kidney cyst",
    "lymph nodes": "Lymph node", "small intestine": "Small bowel", "uterus": "Prostate/uterus",
    "white matter hyperintensity": "White matter hyperintensities", "brain stem": "Brainstem",
    "kidney tumour": "Kidney lesions", "lung nodules": "Lung lesions", "portal vein": "Portal vein and splenic vein",
}


@pytest.mark.parametrize("typed, trained", TYPED_TO_TRAINED.items())
def test_typed_names_map_to_the_training_names(typed, trained):
    [phrase] = parse_text_targets(typed)  # "kidney, left" is one target, as Slicer's terminology names it
    match = medical_sam3_vocabulary().match(phrase)
    assert match.model_text == trained and match.note == ""


def test_every_training_name_maps_to_itself_and_distinct_names_stay_distinct():
    vocabulary = medical_sam3_vocabulary()
    assert 75 <= len(vocabulary.names) <= 90
    for name in vocabulary.names:
        concept = vocabulary.terminology.lookup(name)
        if concept is None:
            assert vocabulary.key(vocabulary.match(name).model_text) == vocabulary.key(name)
        else:  # two classes of one terminology entry ("Bladder", "Urinary bladder") ask for the entry's name
            assert vocabulary.match(name).model_text == vocabulary.match(concept.name).model_text
    same_key = {}
    for name in vocabulary.names:
        same_key.setdefault(vocabulary.key(name), []).append(name)
    assert [names for names in same_key.values() if len(names) > 1] == [["Left Atrium", "Left atrium"]]


def test_unknown_name_runs_as_typed_with_a_note_naming_the_nearest_trained_names():
    match = medical_sam3_vocabulary().match("adrenal gland")
    assert match.model_text == "adrenal gland"
    assert "\n" not in match.note and "not one of the class names" in match.note
    assert "Left adrenal gland" in match.note and "Right adrenal gland" in match.note


class RecordingModel(BrightRegionModel):
    """The bright-region model, remembering the text it was asked for."""

    def __init__(self):
        super().__init__(image_size=252, mask_grid=63)
        self.asked: list[str] = []

    def segment_with_text(self, embedding, text):
        self.asked.append(text)
        return super().segment_with_text(embedding, text)

    def track_text(self, frames, text, start_index, reverse):
        self.asked.append(text)
        yield from super().track_text(frames, text, start_index, reverse)


@pytest.fixture(scope="module")
def spleen_volume():
    return load_case("spleen").volume


def test_the_model_gets_the_training_name_and_the_segment_keeps_the_typed_name(spleen_volume):
    model = RecordingModel()
    session = LocalBackend(SegmentationEngine(model), BackendInfo("recording", "cpu", 252)).open_session(spleen_volume)
    updates = session.segment_text("L kidney; hepatic tumour, hippocampus", "axial", slice_index=12)
    assert model.asked == ["Left kidney", "Liver tumors", "hippocampus"]
    assert [u.label for u in updates] == ["L kidney", "hepatic tumour", "hippocampus"]
    assert [bool(u.note) for u in updates] == [False, False, True]
    model.asked.clear()
    session.segment_text("kidney, left", "axial")  # through the volume too
    assert set(model.asked) == {"Left kidney"}


def test_the_note_reaches_a_remote_client_and_the_command_line(spleen_volume, tmp_path, capsys):
    backend = LocalBackend(SegmentationEngine(RecordingModel()), BackendInfo("recording", "cpu", 252))
    with running_server(backend) as url:
        [update] = RemoteBackend(url, API_KEY).open_session(spleen_volume).segment_text("hippocampus", "axial", 12)
    assert update.label == "hippocampus" and "Nearest trained names" in update.note

    image = write_nifti(spleen_volume, tmp_path / "ct.nii.gz")
    code = main(["segment", str(image), "--text", "hippocampus, spleen", "-o", str(tmp_path / "out.nii.gz")],
                backend_factory=lambda *args: backend)
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    notes = [line for line in printed if line.startswith("note: ")]
    assert len(notes) == 1 and "'hippocampus'" in notes[0]


def test_in_slicer_the_model_gets_the_training_name_and_the_segment_keeps_the_typed_name_and_code(tmp_path):
    from slicer_scene import load_volume_node, new_scene

    from MedicalSAM3SlicerLib.logic import MedicalSAM3SlicerLogic
    from MedicalSAM3SlicerLib.terminology import segment_tag
    from oracle import ground_truth_volume

    case = load_case("spleen")
    scene = new_scene()
    node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    model = RecordingModel()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo("recording", "cpu", 252)))

    made = {}
    for typed in ("portal vein", "Kidney, left"):  # one name per request: names typed together are fused by score
        result = logic.segment(node, segmentation, text=typed)
        assert not result.notes
        segment = segmentation.GetSegmentation().GetSegment(result.segment_ids[0])
        made[typed] = (segment.GetName(), segment_tag(segment))
    assert set(model.asked) == {"Portal vein and splenic vein", "Left kidney"}
    assert made["portal vein"][0] == "Portal vein" and "SCT^32764006^Portal vein" in made["portal vein"][1]
    assert made["Kidney, left"][0] == "Left kidney"
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in made["Kidney, left"][1]


def test_only_vanilla_sam3_gets_the_names_as_typed():
    from medsam3.transports.model_loading import uses_training_vocabulary

    assert uses_training_vocabulary("medical-sam3-3d") and uses_training_vocabulary("medical-sam3-2d")
    assert uses_training_vocabulary("my-finetuned-folder")  # a local Medical SAM3 conversion
    assert not uses_training_vocabulary("sam3")
