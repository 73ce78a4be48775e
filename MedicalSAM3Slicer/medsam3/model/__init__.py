"""The model: what the network sees and how it is built, loaded and run. Imports geometry and terminology only.

- :mod:`.segmentation_model`: the interface every model implements (:class:`~.segmentation_model.SegmentationModel`).
- :mod:`.families` (+ :mod:`.family_plug`): the registry of model families; each catalogue entry names its family,
  whose plug loads it and owns its preprocessing, vocabulary and prompt kinds.
- :mod:`.sam3`: the SAM 3 family (Medical SAM3 through the transformers SAM3 classes, the checkpoint converter,
  the tiny random-weight models, the only transformers patches).
- :mod:`.bright_region` + :mod:`.bright_region_model` (+ :mod:`.sided_region_model`): the stand-in family without
  weights, used as a ground-truth oracle in tests and as a second family end to end.
- :mod:`.preprocessing`: grey levels (windows, normalisation); :mod:`.text_protocol`, :mod:`.vocabulary`: typed words.
- :mod:`.model_sources` (``model_catalogue.json``), :mod:`.capabilities`, :mod:`.prompt_kinds`: where weights come
  from and what a model serves.
"""
