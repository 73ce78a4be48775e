"""Qt helpers of the MedicalSAM3Slicer widget (layer 3: they import Qt and run only inside Slicer).

- :mod:`.labelmap_conversion`: asking before a closed-surface segmentation is converted to a binary labelmap.
- :mod:`.model_panel`: the widget's model and export buttons (install packages, load a model, export).
- :mod:`.prompt_tools`: the tool buttons, the markups that clicks and boxes are kept in, the strokes waiting to run.
- :mod:`.slice_view_mouse`: the slice-view event filter behind the point, box, scribble and lasso tools, and the
  live outline of a gesture. Its decisions live in :mod:`MedicalSAM3SlicerLib.slice_view_interaction`.
"""
