"""``medsam3 batch``: segment a whole cohort from typed names, on this machine or spread over a Ray cluster.

An application on top of the engine (it only calls :func:`medsam3.apps.segment_pipeline.segment_volume`):

- :mod:`.cases`: what the inputs are (files, folders, DICOM studies one case per series, ``dataset.json``).
- :mod:`.prompts_csv`: clicks and boxes per case from a CSV, in RAS or IJK.
- :mod:`.segment_codes`: names, colours and SNOMED CT codes of the segments.
- :mod:`.outputs`: labelmap, ``.seg.nrrd`` and DICOM SEG of one case, written atomically.
- :mod:`.case_runner`: one case, read -> segment -> write, as one JSON-able record (never raises).
- :mod:`.journal`: the JSON-lines log, and which cases are already done with the same inputs and settings.
- :mod:`.progress`: done / left / ETA lines and the summary table.
- :mod:`.local` and :mod:`.ray_runner`: the two ways of running the cases.
- :mod:`.command`: the ``batch`` sub-command of the ``medsam3`` command line.
"""
