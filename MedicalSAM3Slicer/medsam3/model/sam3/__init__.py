"""The SAM 3 family: Meta's SAM 3 and Medical SAM3 through the transformers SAM3 classes.

- :mod:`.plug`: what the family registry (:mod:`medsam3.model.families`) asks: loading, preprocessing, vocabulary,
  prompt kinds.
- :mod:`.transformers_model`: the model; :mod:`.model_classes`, :mod:`.processors`, :mod:`.precision`,
  :mod:`.rotary_tables`, :mod:`.meta_parity`, :mod:`.weight_sharing` serve it; :mod:`.transformers_patches` is the only
  place that sets attributes on torch / transformers objects.
- :mod:`.meta_checkpoint`: Meta's ``.pt`` checkpoint converted to a transformers folder; :mod:`.tiny_models`:
  random-weight models of the same classes; ``model_vocabulary.json``: Medical SAM3's training class names.
"""
