"""Fine-tuning Medical SAM3's detector on a user's labelled cases (``medsam3 finetune``): training slices made with
the engine's own preprocessing and model frame (``slices``), SAM 3's losses (``losses``), the loop on
transformers' ``Sam3Model`` (``loop``) and the saved model folder (``model_folder``). No Slicer, no Qt."""
