"""Geometry: where voxels are. The lowest layer; it imports nothing but :mod:`medsam3.errors`.

- :mod:`.volume`: a volume array with its IJK -> RAS matrix (:class:`~.volume.Volume`).
- :mod:`.slicing`: a slice of any orientation through a volume, and a point's voxel / in-slice coordinates.
- :mod:`.model_frame`: a slice resized to the model's square input and a mask mapped back (letterbox, bilinear).
"""
