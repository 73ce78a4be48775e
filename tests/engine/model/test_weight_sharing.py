"""Classes loaded from one folder hold their common weights once (memory), with unchanged answers (see
test_shared_backbone for the answers with and without sharing)."""

from medsam3.model.transformers_model import TransformersSegmentationModel
from medsam3.model.weight_sharing import distinct_weight_bytes


ROLES = ("sam3", "sam3_tracker", "sam3_tracker_video", "sam3_video")


def _parameter_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_four_classes_from_one_folder_hold_about_one_model_of_weights(one_folder_model, one_torch_thread):
    shared = TransformersSegmentationModel(one_folder_model, "one-folder", precision="float32")
    separate = TransformersSegmentationModel(one_folder_model, "one-folder-separate", precision="float32")
    separate.shares_backbone = False  # loaded as before: every class with its own copy
    shared_models = [shared.component(role)[0] for role in ROLES]
    separate_models = [separate.component(role)[0] for role in ROLES]

    video_bytes = _parameter_bytes(shared.component("sam3_video")[0])  # detector + tracker: every weight there is
    held_apart = distinct_weight_bytes(separate_models)
    held_shared = distinct_weight_bytes(shared_models)
    assert held_apart > 2 * video_bytes
    assert held_shared <= 1.02 * video_bytes
    # a shared tensor is one tensor: the tracker's ViT projections are the detector's
    vit = shared.component("sam3_tracker")[0].vision_encoder.backbone
    detector_vit = shared.component("sam3")[0].vision_encoder.backbone
    assert all(a.weight is b.weight for a, b in zip(vit.layers, detector_vit.layers)
               for a, b in ((a.attention.q_proj, b.attention.q_proj), (a.mlp.fc1, b.mlp.fc1)))
