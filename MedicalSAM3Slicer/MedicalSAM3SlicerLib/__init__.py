"""The bridge between 3D Slicer's MRML scene and the medsam3 engine (no Qt: importable with slicer-core alone).

- :mod:`.volume_nodes`: scalar volume nodes as engine volumes in world coordinates.
- :mod:`.prompt_nodes`: point lists, ROIs and slice views as engine prompts in voxel coordinates.
- :mod:`.slice_view_interaction`: mouse gestures on slice views (click, box drag, scribble, lasso) as prompts.
- :mod:`.segment_io`: engine mask updates into segments (changed box only) and segments back as masks.
- :mod:`.terminology`: typed names as segment names, colours and SNOMED CT codes.
- :mod:`.logic`: :class:`MedicalSAM3SlicerLogic`, the GUI-free API scripts call.
- :mod:`.worker`: the one persistent thread that runs model calls for the GUI.
- :mod:`.parameters`: the module's parameter node.
- :mod:`.exports`: labelmap (NIfTI, NRRD), .seg.nrrd and DICOM SEG files.
- :mod:`.dependencies`: what to install on first use (only what is missing, never Slicer's own packages), installed
  only after the user agrees.
- :mod:`.supported_versions`: Slicer 5.10 or later; one line for an older Slicer (standard library only).
- :mod:`.self_test_model`: the phantom and stand-in network of the module's self-test.

Only :mod:`.logic` needs the engine's model stack (torch, scipy); every other module imports without it, so the Slicer module loads, and can offer to install the dependencies, before they exist.
"""

__all__ = ["MedicalSAM3SlicerLogic", "SegmentationResult"]


def __getattr__(name: str):
    """``MedicalSAM3SlicerLogic`` and ``SegmentationResult`` are imported on first use (they need torch)."""
    if name in __all__:
        from . import logic

        return getattr(logic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
