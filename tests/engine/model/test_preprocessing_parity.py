"""Our default model input equals what Medical SAM3 saw in training, on a real CT and a real MRI.

The reference below is rebuilt independently from the documented steps (not from our code):
- training images: CVPR 2025 BiomedSegFM ``imgs``, uint8 in [0, 255] (dataset card), read unchanged when uint8
  (AIM-Research-Lab/Medical-SAM3 ``sam3/train/data/sam3_image_dataset.py``), grey copied to RGB, ``/255``,
  normalised with mean 0.5 and std 0.5 (``sam3/train/configs/medsam3_stage1_train_all_unified.yaml``);
- those uint8 volumes come from the MedSAM preprocessing (bowang-lab/MedSAM ``pre_CT_MR.py``): CT clipped to
  window level 40 / width 400, MR clipped to the 0.5 / 99.5 percentiles of its voxels > 0; then min-max over the
  clipped volume to 0..255, voxels that were 0 set to 0, cast to uint8 (truncation).
Geometry (our letterbox into the model square) is shared by both sides through the same ModelFrame, so that only
intensities are compared.
"""

import numpy as np
import pytest
import SimpleITK as sitk

from cases import data_path
from medsam3.model.bright_region_model import BrightRegionModel
from medsam3.interaction.engine import SegmentationEngine
from medsam3.files.volume_io import read_volume

MODEL_SIZE = 504


def authors_ct_uint8(path) -> np.ndarray:
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
    level, width = 40, 400
    clipped = np.clip(image, level - width / 2, level + width / 2)
    scaled = (clipped - clipped.min()) / (clipped.max() - clipped.min()) * 255.0
    return scaled.astype(np.uint8)


def authors_mr_uint8(path) -> np.ndarray:
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
    positive = image[image > 0]
    low, high = np.percentile(positive, 0.5), np.percentile(positive, 99.5)
    clipped = np.clip(image, low, high)
    scaled = (clipped - clipped.min()) / (clipped.max() - clipped.min()) * 255.0
    scaled[image == 0] = 0
    return scaled.astype(np.uint8)


def authors_pixels(grey_uint8: np.ndarray) -> np.ndarray:
    """grey -> RGB -> /255 -> (x - 0.5) / 0.5, channel 0 (the three channels are equal)."""
    rgb = np.repeat(grey_uint8[..., None], 3, axis=-1).astype(np.float32) / 255.0
    return ((rgb - 0.5) / 0.5)[..., 0]


@pytest.mark.parametrize("relative, target, reference", [
    ("ct/spleen_msd_crop/image.nii.gz", "spleen", authors_ct_uint8),
    ("mr/pyradiomics/brain1_image.nrrd", "tumour", authors_mr_uint8),
])
def test_default_model_input_matches_the_training_intensities(relative, target, reference):
    path = data_path(relative)
    volume = read_volume(path)
    expected_volume = reference(path)
    assert expected_volume.shape == volume.array.shape
    engine = SegmentationEngine(BrightRegionModel(image_size=MODEL_SIZE, mask_grid=126))
    frames = engine.frames(volume, "axial", target_text=target)
    index = len(frames) // 2
    ours = frames.image(index)  # the model image, 0..1, before the processor's mean/std
    expected_slice = frames.geometry.as_slice_stack(expected_volume)[index]
    assert expected_slice.std() > 10  # a real slice with contrast, not a blank one

    # slice level: our grey levels are the training uint8 levels
    ours_slice = frames.preprocessing.apply(frames.geometry.as_slice_stack(volume.array)[index])
    slice_difference = np.abs(ours_slice * 255.0 - expected_slice.astype(np.float32)).max()
    # model level: the same letterbox on both sides, then the processor's normalisation (mean 0.5, std 0.5)
    theirs_in_model = frames.frame.image_to_model(expected_slice.astype(np.float32) / 255.0)
    normalised_difference = np.abs((ours - 0.5) / 0.5 - (theirs_in_model - 0.5) / 0.5).max()
    model_difference = normalised_difference * 255.0 / 2.0  # one grey level is 2/255 after mean/std 0.5
    print(f"{relative}: max difference {slice_difference:.3f} grey levels on the slice, "
          f"{model_difference:.3f} in the {MODEL_SIZE} px model input")
    assert slice_difference <= 1.0
    assert model_difference <= 1.0


def test_authors_pixel_normalisation_is_what_our_processor_files_say():
    """mean/std 0.5 on grey copied to RGB: our processors are configured so (the processor files we write)."""
    from medsam3.model.sam3.processors import build_processor
    from medsam3.model.sam3.tiny_models import build_tiny_tokenizer

    processor = build_processor("sam3", MODEL_SIZE, build_tiny_tokenizer())
    assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]
    assert list(processor.image_processor.image_std) == [0.5, 0.5, 0.5]
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    assert np.allclose(authors_pixels(grey), [[-1.0, 128 / 127.5 - 1.0, 1.0]], atol=1e-6)
