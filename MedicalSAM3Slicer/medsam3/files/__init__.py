"""Files: volumes and segmentations on disk. Imports interaction and below, never a transport or an application.

:mod:`.outputs` (the one writer of result files, for every application and the Slicer export),
:mod:`.volume_io` (NIfTI, NRRD, DICOM series via SimpleITK), :mod:`.seg_nrrd` (Slicer's ``.seg.nrrd``),
:mod:`.overlay` (PNG previews), :mod:`.segment_colours`, :mod:`.atomic_files` (all outputs or none).
"""
