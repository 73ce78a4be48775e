"""The model: what the network sees and how it is built, loaded and run. Imports geometry only.

- :mod:`.segmentation_model`: the interface every model implements (:class:`~.segmentation_model.SegmentationModel`).
- :mod:`.transformers_model`: Medical SAM3 through the transformers SAM3 classes; :mod:`.model_classes`,
  :mod:`.processors`, :mod:`.precision`, :mod:`.rotary_tables`, :mod:`.weight_sharing` serve it.
- :mod:`.preprocessing`: the grey levels the model sees (window, normalisation).
- :mod:`.text_protocol`, :mod:`.vocabulary` (``model_vocabulary.json``): typed words the model knows.
- :mod:`.model_sources` (``model_catalogue.json``), :mod:`.capabilities`: where weights come from and what a folder
  can do; :mod:`.meta_checkpoint`: Meta's ``.pt`` checkpoint converted to a transformers folder.
- :mod:`.tiny_models`, :mod:`.bright_region_model`: random-weight and trivial models for tests and self-tests.
"""
