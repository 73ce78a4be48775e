"""``medsam3 finetune`` (see command.py)."""
