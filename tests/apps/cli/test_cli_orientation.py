"""`medsam3 segment --view V --point X,Y,Z` puts the mask on the side of the object the picture shows, in every
view, on real volumes stored with negative direction cosines, in process and through a server: the sided
stand-in (see tests/engine/interaction/test_orientation_placement.py) fails any flipped, mirrored or transposed
picture."""

from __future__ import annotations

import pytest

from medsam3.apps.cli import main
from medsam3.files.volume_io import read_volume
from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.sided_region_model import SidedRegionModel
from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.transports.remote_client import RemoteBackend

from cases import VARIANTS, load_case
from oracle import ground_truth_volume
from server_harness import API_KEY, running_server, write_nifti
from sided import sided_expectation
from placement import click_in_object, dice, normal_ijk_axis
from sided import SIDED_DICE

SIDED_INFO = BackendInfo(model="sided-bright-region", device="cpu", image_size=1008)


def sided_backend() -> LocalBackend:
    return LocalBackend(SegmentationEngine(SidedRegionModel()), SIDED_INFO)


def sided_factory(model=None, device=None, server_url=None, api_key=None):
    return RemoteBackend(server_url, api_key) if server_url else sided_backend()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """brats as stored (i and j reversed) and the spleen stored with i and k reversed, as NIfTI files."""
    folder = tmp_path_factory.mktemp("orientation")
    written = {}
    for name, case in (("brats", load_case("brats_tumour")), ("spleen", VARIANTS["flipped"](load_case("spleen")))):
        volume = ground_truth_volume(case.volume, case.mask)
        written[name] = (write_nifti(volume, folder / f"{name}.nii.gz"), volume, case.mask)
    return written


def segment_one_click(image, volume, mask, axis, output, server=None):
    ijk, region = click_in_object(mask, normal_ijk_axis(volume.ijk_to_ras, axis))
    ras = ",".join(f"{v:.4f}" for v in volume.ijk_to_ras_points([ijk])[0])
    arguments = ["segment", str(image), "--point", ras, "--view", axis, "--slice-only", "-o", str(output)]
    status = main(arguments + (["--server", server, "--api-key", API_KEY] if server else []), backend_factory=sided_factory)
    assert status == 0
    written = read_volume(output)
    assert written.array.shape == mask.shape
    return written.array == 1, sided_expectation(region, volume.ijk_to_ras, axis, ijk)


@pytest.mark.parametrize("name", ["brats", "spleen"])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_cli_click_keeps_the_side_the_picture_shows(images, name, axis, tmp_path):
    image, volume, mask = images[name]

    result, expected = segment_one_click(image, volume, mask, axis, tmp_path / "out.nii.gz")

    assert dice(result, expected) >= SIDED_DICE


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_cli_click_through_a_server_keeps_the_side_the_picture_shows(images, axis, tmp_path):
    image, volume, mask = images["brats"]
    with running_server(sided_backend()) as url:
        result, expected = segment_one_click(image, volume, mask, axis, tmp_path / "out.nii.gz", server=url)

    assert dice(result, expected) >= SIDED_DICE
