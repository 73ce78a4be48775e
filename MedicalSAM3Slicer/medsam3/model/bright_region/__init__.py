"""The bright-region family: the stand-in of :mod:`medsam3.model.bright_region_model` as a model family of its own
(catalogue name ``bright-region``), with its own preprocessing and vocabulary; see :mod:`.plug`."""
