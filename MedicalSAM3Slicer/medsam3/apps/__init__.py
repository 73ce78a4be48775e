"""Applications built on the engine: the ``medsam3`` command (:mod:`.cli`), the demo, one-volume segmentation
(:mod:`.segment_pipeline`), ``batch``, ``evaluate``, ``bench`` and the HTTP server (``serve``).

They may import every engine package; nothing in the engine imports them.
"""
