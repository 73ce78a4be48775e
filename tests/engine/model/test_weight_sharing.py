"""Classes loaded from one folder hold their common weights once (memory), with unchanged answers (see
test_shared_backbone for the answers with and without sharing)."""

from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
from medsam3.model.sam3.weight_sharing import distinct_weight_bytes


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


def _resident_kib_mapped_from(folder) -> int:
    """Resident KiB of this process's mappings of the folder's weights files (Linux /proc/self/smaps)."""
    files = {str(path.resolve()) for path in folder.glob("*.safetensors")}
    resident, current = 0, None
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                current = fields[-1] if len(fields) >= 6 else None
            elif fields and fields[0] == "Rss:" and current in files:
                resident += int(fields[1])
    return resident


def test_loaded_classes_keep_no_pages_of_the_weights_file_resident(one_folder_model, one_torch_thread):
    """transformers reads the weights through a mapping of the file that outlived loading; on the full-size model
    it kept 6.7 GB of file pages resident beside 1.9 GB of bfloat16 weights (issue 22)."""
    import sys

    import pytest
    import torch

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/smaps")
    model = TransformersSegmentationModel(one_folder_model, "one-folder", precision="bfloat16")
    for role in ROLES:
        model.component(role)
    assert _resident_kib_mapped_from(one_folder_model) == 0
    # and the weights held are still the file's
    from safetensors.torch import load_file

    saved = load_file(next(one_folder_model.glob("*.safetensors")))
    tracker = model.component("sam3_tracker")[0]
    assert torch.equal(tracker.mask_decoder.conv_s0.weight, saved["tracker_model.mask_decoder.conv_s0.weight"])
    assert torch.equal(tracker.prompt_encoder.point_embed.weight, saved["tracker_model.prompt_encoder.point_embed.weight"])
