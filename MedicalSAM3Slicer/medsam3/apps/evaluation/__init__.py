"""``medsam3 evaluate``: measure the model on the user's own labelled data.

An application built on the engine's public interfaces (backends and sessions), not part of the engine:
datasets (three input formats), a simulated user (clicks and boxes), the protocols, Dice and NSD, the run with
progress and resume, and the report (CSV, JSON, PNG plots, Markdown).
"""
