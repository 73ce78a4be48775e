"""``medsam3 bench``: speed (:mod:`.benchmark`) and agreement of the reduced precisions (:mod:`.precision_agreement`)."""
