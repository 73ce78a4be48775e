"""Interaction: prompts on slices, a session of objects, and the engine that turns them into masks.

Imports model and geometry only. :mod:`.prompts` (clicks, boxes, typed text on a slice), :mod:`.engine` (one
volume, one model: predict on a slice, propagate through the volume), :mod:`.session` (objects with undo, the
labelmap they make), :mod:`.embedding_cache` and :mod:`.prefetch` (slice embeddings computed ahead of the click).
"""
