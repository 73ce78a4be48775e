"""Surface distances are measured in millimetres along the right axes: each dataset format hands the metrics the
spacing of the numpy axes (k, j, i), not the image's (x, y, z). On the spleen CT (0.79 x 0.79 x 5 mm) the two
orders differ six-fold along k, and NSD with them (0.064 against 0.211 at the same Dice, issue 23)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.evaluation.datasets import open_dataset

from cases import data_path


def test_a_nifti_pair_gives_the_spacing_of_the_numpy_axes(tmp_path):
    image = data_path("ct/spleen_msd_crop/image.nii.gz")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "spleen.nii.gz").symlink_to(image.resolve())
    (tmp_path / "labels" / "spleen.nii.gz").symlink_to(data_path("ct/spleen_msd_crop/label_spleen.nii.gz").resolve())
    (tmp_path / "labels.json").write_text(json.dumps({"1": "spleen"}))
    x, y, z = sitk.ReadImage(str(image)).GetSpacing()
    assert z > 4 * x  # the order matters on this image

    (case,) = open_dataset(tmp_path).cases
    loaded = case.load()

    assert loaded.spacing_kji == pytest.approx((z, y, x))
    assert loaded.labels.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(image))).shape


def test_a_challenge_npz_gives_the_spacing_of_the_numpy_axes(tmp_path):
    images = np.full((4, 5, 6), -1000, dtype=np.int16)
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 2:4, 2:5] = 1
    np.savez(tmp_path / "case.npz", imgs=images, gts=labels, spacing=np.array([0.5, 0.8, 3.0]))  # x, y, z
    (tmp_path / "labels.json").write_text(json.dumps({"1": "lesion"}))

    loaded = open_dataset(tmp_path / "case.npz").cases[0].load()

    assert loaded.spacing_kji == pytest.approx((3.0, 0.8, 0.5))


@pytest.mark.parametrize("shift_axis, within_tolerance", [(0, False), (2, True)])
def test_a_result_row_measures_surface_distance_along_each_axis_in_its_own_millimetres(shift_axis, within_tolerance):
    """A box predicted one voxel off: along k that is 5 mm, beyond the 2 mm tolerance, so its two faces across k
    count as misses; along i it is 0.8 mm, within it, so NSD is 1."""
    from medsam3.apps.evaluation.datasets import LoadedCase, Structure
    from medsam3.apps.evaluation.protocols import Step
    from medsam3.apps.evaluation.run import EvaluationSettings, _row
    from medsam3.geometry.volume import Volume

    truth = np.zeros((16, 24, 24), dtype=bool)
    truth[4:12, 6:18, 6:18] = True
    prediction = np.roll(truth, 1, axis=shift_axis)
    volume = Volume(np.zeros(truth.shape, dtype=np.int16), np.diag([0.8, 0.8, 5.0, 1.0]))
    case = LoadedCase("box", volume, truth.astype(np.int32), (5.0, 0.8, 0.8))

    row = _row(case, Structure(1, "box"), Step("clicks", 1, "click", prediction, 0.1, 0.05), truth,
               EvaluationSettings(tolerance_mm=2.0), compact=True)

    assert (row["nsd"] == 1.0) is within_tolerance
    if not within_tolerance:
        assert row["nsd"] < 0.9
