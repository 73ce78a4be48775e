"""The four transformers SAM 3 classes, by the key the engine uses for each throughout (folder names of saved
tiny models, conversion targets, roles of the loaded model)."""

from __future__ import annotations

from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Sam3Model,
    Sam3Processor,
    Sam3TrackerModel,
    Sam3TrackerProcessor,
    Sam3TrackerVideoModel,
    Sam3TrackerVideoProcessor,
    Sam3VideoModel,
    Sam3VideoProcessor,
)

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "sam3": Sam3Model,  # text (and exemplar boxes) on one image
    "sam3_tracker": Sam3TrackerModel,  # points, boxes, masks on one image
    "sam3_tracker_video": Sam3TrackerVideoModel,  # points, boxes, masks through frames
    "sam3_video": Sam3VideoModel,  # text through frames
}

PROCESSOR_CLASSES: dict[str, type[ProcessorMixin]] = {
    "sam3": Sam3Processor,
    "sam3_tracker": Sam3TrackerProcessor,
    "sam3_tracker_video": Sam3TrackerVideoProcessor,
    "sam3_video": Sam3VideoProcessor,
}
