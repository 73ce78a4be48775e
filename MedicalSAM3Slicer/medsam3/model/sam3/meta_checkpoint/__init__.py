"""Convert Meta-format SAM 3 checkpoints (as published by Medical SAM3) to transformers model directories.

Three naming schemes meet here:

* **Meta's own names**, as in Meta's ``sam3.pt`` and the Medical SAM3 ``.pt`` files. A video checkpoint holds
  ``detector.*`` (the image model: ``detector.backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight``...)
  and ``tracker.*`` (the SAM 2-style tracker: ``tracker.sam_mask_decoder...``); an image checkpoint holds the
  detector part without the ``detector.`` prefix, and its tracker (if any) under
  ``inst_interactive_predictor.model.``. :func:`normalize_meta_keys` brings all of them to one **normalized
  Meta namespace**: detector names bare, tracker names under ``tracker.``.
* **transformers' full namespace**, the parameter names of ``Sam3VideoModel`` (``detector_model.*``,
  ``tracker_model.*``, ``tracker_neck.*``). The rule table below maps normalized Meta names to it and back,
  with the tensor changes the two implementations need (fused q/k/v split, class-token position dropped,
  CLIP projection transposed, point embeddings stacked, one positional matrix used twice).
* **A target class's names**: ``Sam3Model`` is ``detector_model.*``; ``Sam3TrackerModel`` and
  ``Sam3TrackerVideoModel`` take the detector's ViT backbone, ``tracker_neck`` as their neck and
  ``tracker_model.*`` (the same selection transformers itself applies when loading ``facebook/sam3``).

The package, by step: :mod:`.config` (the full-size configurations), :mod:`.checkpoint_file` (reading a ``.pt``),
:mod:`.rule_table` with :mod:`.detector_names` and :mod:`.tracker_names` (the name rules), :mod:`.mapping` (a whole
state dict, both ways) and :mod:`.convert` (writing the transformers folder).
"""

from .config import (FULL_SIZE_CONFIG_CLASSES, META_VIT_LAYER_NORM_EPS, TARGET_MODEL_CLASSES, Target,
                     full_size_config)
from .checkpoint_file import load_meta_state_dict, normalize_meta_keys
from .rule_table import RuleKind
from .mapping import MetaStateDictMapping, export_meta_state_dict, map_meta_state_dict
from .convert import ConversionReport, convert_meta_checkpoint

__all__ = [
    "ConversionReport", "FULL_SIZE_CONFIG_CLASSES", "META_VIT_LAYER_NORM_EPS", "MetaStateDictMapping", "RuleKind",
    "TARGET_MODEL_CLASSES", "Target", "convert_meta_checkpoint", "export_meta_state_dict", "full_size_config",
    "load_meta_state_dict", "map_meta_state_dict", "normalize_meta_keys",
]
