"""Medical SAM3 engine: volumes, prompts, preprocessing, model loading, prediction and propagation.

This package has no Slicer and no Qt dependency. Arrays follow the Slicer / SimpleITK convention:
a volume array is indexed ``array[k, j, i]`` and voxel coordinates are written ``(i, j, k)``.
"""

__version__ = "0.1.0"
