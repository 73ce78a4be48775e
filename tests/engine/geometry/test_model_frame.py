"""The map between a slice and the model's square image (``ModelFrame``): the letterbox a slice gets for its true
aspect, pixel coordinates both ways, images in, masks in and low-resolution logits out; and the numpy resize that
stands in for torch's before torch is installed. Expected values are worked out by hand from the pixel-centre
convention (pixel ``u`` covers ``[u - 0.5, u + 0.5)``) or come from torch itself."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.geometry.model_frame import ModelFrame, resize_bilinear


@pytest.mark.parametrize("image_shape, spacing, size, content, offset", [
    ((100, 50), (1.0, 1.0), 200, (200, 100), (0, 50)),  # tall: full height, centred across
    ((50, 100), (1.0, 1.0), 200, (100, 200), (50, 0)),  # wide: full width, centred down
    ((50, 100), (2.0, 1.0), 200, (200, 200), (0, 0)),  # 2 mm rows make it square
    ((26, 164), (5.0, 0.5), 164, (164, 103), (0, 30)),  # 130 mm x 82 mm: 82 / 130 * 164 = 103.4 columns
    ((1000, 1), (1.0, 1.0), 100, (100, 1), (0, 49)),  # a one-pixel-wide strip keeps one column
    ((7, 7), (1.0, 1.0), 7, (7, 7), (0, 0)),  # the model's own size: nothing moves
    ((1, 1000), (1.0, 1.0), 100, (1, 100), (49, 0)),  # a one-pixel-high strip keeps one row
])
def test_a_slice_fills_the_square_along_its_longer_side_in_millimetres(image_shape, spacing, size, content, offset):
    frame = ModelFrame.fit(image_shape, spacing, size)
    assert (frame.image_shape, frame.model_size, frame.content_shape, frame.offset) == (image_shape, size, content,
                                                                                          offset)


def test_pixel_coordinates_map_to_the_model_square_and_back():
    frame = ModelFrame.fit((100, 50), (1.0, 1.0), 200)  # 2 model pixels per slice pixel, 50 columns of padding
    # pixel (row 0, column 0) covers model rows 0..2 and columns 50..52: its centre is at model (x 50.5, y 0.5)
    xy = frame.slice_to_model_xy([[0, 0], [99, 49], [10, 20]])
    np.testing.assert_allclose(xy, [[50.5, 0.5], [148.5, 198.5], [90.5, 20.5]])
    np.testing.assert_allclose(frame.model_xy_to_slice(xy), [[0, 0], [99, 49], [10, 20]])
    np.testing.assert_allclose(frame.model_xy_to_slice([[49.5, -0.5]]), [[-0.5, -0.5]])  # corner to corner
    np.testing.assert_allclose(frame.slice_to_model_xy([5, 7]), [[64.5, 10.5]])  # one point, not a list


def test_the_model_image_is_the_slice_resized_into_the_letterbox_and_the_rest_is_fill():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    image = rng.normal(size=(40, 20)).astype(np.float32)
    frame = ModelFrame.fit((40, 20), (1.0, 1.0), 60)  # content 60 x 30 at column 15: enlarged
    model = frame.image_to_model(image, fill=-2.0)
    assert model.shape == (60, 60) and model.dtype == np.float32
    expected = F.interpolate(torch.from_numpy(image)[None, None], size=(60, 30), mode="bilinear",
                             align_corners=False, antialias=False)[0, 0].numpy()
    np.testing.assert_allclose(model[:, 15:45], expected, atol=1e-6)
    assert (model[:, :15] == -2.0).all() and (model[:, 45:] == -2.0).all()
    assert (frame.image_to_model(image)[:, :15] == 0.0).all()  # the default fill

    small = ModelFrame.fit((40, 20), (1.0, 1.0), 20)  # content 20 x 10: shrunk, so antialiased
    expected = F.interpolate(torch.from_numpy(image)[None, None], size=(20, 10), mode="bilinear",
                             align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_allclose(small.image_to_model(image)[:, 5:15], expected, atol=1e-6)
    wide = ModelFrame.fit((20, 40), (2.0, 1.0), 20)  # rows enlarged 20 -> 20 x 2 mm, columns shrunk: antialiased
    expected = F.interpolate(torch.from_numpy(image.T.copy())[None, None], size=(20, 20), mode="bilinear",
                             align_corners=False, antialias=True)[0, 0].numpy()
    assert wide.content_shape == (20, 20)
    np.testing.assert_allclose(wide.image_to_model(image.T), expected, atol=1e-6)
    tall = ModelFrame.fit((40, 10), (1.0, 8.0), 30)  # 40 x 80 mm: rows shrunk 40 -> 15, columns enlarged 10 -> 30
    expected = F.interpolate(torch.from_numpy(image[:, :10].copy())[None, None], size=(15, 30), mode="bilinear",
                             align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_allclose(tall.image_to_model(image[:, :10])[7:22], expected, atol=1e-6)
    ct = (image * 100).astype(np.int16)  # a CT slice as stored: integers
    np.testing.assert_allclose(small.image_to_model(ct), small.image_to_model(ct.astype(np.float32)), atol=1e-6)


def test_a_mask_becomes_its_foreground_fraction_on_the_model_grid():
    frame = ModelFrame.fit((8, 4), (1.0, 1.0), 16)  # content 16 x 8 at column 4: two model pixels per slice pixel
    mask = np.zeros((8, 4), bool)
    mask[2:6, 1:3] = True
    grid = frame.mask_to_model_grid(mask, 16)
    # model pixel n's centre is slice row n / 2 - 0.25 and column (n - 4) / 2 - 0.25: linear across the edges
    rows, columns = np.zeros(16), np.zeros(16)
    rows[3:13] = [0.25, 0.75, 1, 1, 1, 1, 1, 1, 0.75, 0.25]
    columns[5:11] = [0.25, 0.75, 1, 1, 0.75, 0.25]
    expected = np.outer(rows, columns)
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    coarse = frame.mask_to_model_grid(np.ones((8, 4), bool), 4)  # 4 x 4 grid: centres at model 2, 6, 10, 14
    np.testing.assert_allclose(coarse, [[0, 1, 1, 0]] * 4, atol=1e-6)  # outside the content: nothing
    wide = ModelFrame.fit((4, 8), (1.0, 1.0), 16)  # content 8 x 16 from row 4
    np.testing.assert_allclose(wide.mask_to_model_grid(np.ones((4, 8), bool), 4), np.array([[0, 1, 1, 0]] * 4).T,
                               atol=1e-6)


def test_model_grid_values_come_back_at_each_slice_pixel():
    frame = ModelFrame.fit((8, 4), (1.0, 1.0), 16)
    grid = np.zeros((8, 8), np.float32)  # half the model size: one grid cell per slice pixel inside the content
    grid[:, 2:6] = np.arange(32, dtype=np.float32).reshape(8, 4)
    np.testing.assert_allclose(frame.model_grid_to_slice(grid), np.arange(32).reshape(8, 4), atol=1e-5)
    fine = np.zeros((16, 16), np.float32)  # the model size: each slice pixel averages its 2 x 2 model pixels
    fine[:, 4:12] = np.kron(np.arange(32, dtype=np.float32).reshape(8, 4), np.ones((2, 2)))
    np.testing.assert_allclose(frame.model_grid_to_slice(fine), np.arange(32).reshape(8, 4), atol=1e-5)
    edge = np.full((8, 8), 5.0, np.float32)  # values beyond the grid's edge are the edge's (no dark border)
    np.testing.assert_allclose(frame.model_grid_to_slice(edge), 5.0)
    coarse = np.full((4, 4), 5.0, np.float32)  # the first pixel centre falls a quarter cell before the grid's
    np.testing.assert_allclose(frame.model_grid_to_slice(coarse), 5.0)


@pytest.mark.parametrize("shape_in, shape_out", [((12, 10), (24, 25)), ((12, 10), (5, 3)), ((9, 30), (20, 7)),
                                                 ((1, 5), (3, 5)), ((6, 6), (6, 6))])
def test_the_numpy_resize_equals_torchs(shape_in, shape_out):
    import torch
    import torch.nn.functional as F

    image = np.random.default_rng(2).normal(size=shape_in).astype(np.float32)
    for antialias in (False, True):
        expected = F.interpolate(torch.from_numpy(image)[None, None], size=shape_out, mode="bilinear",
                                 align_corners=False, antialias=antialias)[0, 0].numpy()
        resized = resize_bilinear(image, shape_out, antialias)
        assert resized.dtype == np.float32
        np.testing.assert_allclose(resized, expected, atol=1e-5)


def test_without_torch_the_model_image_is_the_same(monkeypatch):
    import builtins

    image = np.random.default_rng(4).normal(size=(30, 14)).astype(np.float32)
    frame = ModelFrame.fit((30, 14), (1.0, 1.5), 24)
    with_torch = frame.image_to_model(image, fill=-1.0)
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    np.testing.assert_allclose(frame.image_to_model(image, fill=-1.0), with_torch, atol=1e-5)
