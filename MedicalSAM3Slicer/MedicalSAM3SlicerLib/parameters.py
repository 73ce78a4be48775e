"""The module's parameter node: what the user chose, saved with the scene.

A singleton ``vtkMRMLScriptedModuleNode`` (tag ``MedicalSAM3Slicer``) holds node references for the source
volume and segmentation and plain parameters for the rest. Secrets (a server API key) are never stored here,
because scenes are saved and shared; the widget keeps the key in the application settings instead.
"""

from __future__ import annotations

MODULE_NAME = "MedicalSAM3Slicer"

SOURCE_VOLUME_ROLE = "SourceVolume"
SEGMENTATION_ROLE = "Segmentation"

# parameter name -> default value (as stored: strings)
DEFAULTS = {
    "Text": "",
    "AutoRun": "true",
    "WholeVolume": "true",
    "ModelSource": "",
    "Device": "auto",
    "ServerUrl": "",
    "Modality": "auto",
}

MODALITY_CHOICES = ("auto", "CT", "MR")


def _modality_override(value: str) -> str | None:
    value = (value or "").strip().upper()
    return value if value in MODALITY_CHOICES[1:] else None


def scene_modality_override(scene) -> str | None:
    """The user's ``Modality`` choice in the scene's parameter node ("CT", "MR", or None for automatic), read
    without creating the node (scripts that never showed the module have none)."""
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode") if scene is not None else None
    return _modality_override(node.GetParameter("Modality")) if node is not None else None


def _text_property(name: str, doc: str):
    def get(self) -> str:
        return self.node.GetParameter(name)

    def set(self, value: str) -> None:
        self.node.SetParameter(name, str(value))

    return property(get, set, doc=doc)


def _flag_property(name: str, doc: str):
    def get(self) -> bool:
        return self.node.GetParameter(name) == "true"

    def set(self, value: bool) -> None:
        self.node.SetParameter(name, "true" if value else "false")

    return property(get, set, doc=doc)


def _reference_property(role: str, doc: str):
    def get(self):
        return self.node.GetNodeReference(role)

    def set(self, value) -> None:
        self.node.SetNodeReferenceID(role, value.GetID() if value is not None else None)

    return property(get, set, doc=doc)


class MedicalSAM3SlicerParameters:
    """Typed access to the parameter node."""

    source_volume = _reference_property(SOURCE_VOLUME_ROLE, "The volume prompts are placed on.")
    segmentation = _reference_property(SEGMENTATION_ROLE, "The segmentation results are written to.")
    text = _text_property("Text", "Typed targets, e.g. 'liver, left kidney'.")
    auto_run = _flag_property("AutoRun", "Predict after every click or box.")
    whole_volume = _flag_property("WholeVolume", "Propagate through the volume (else: this slice only).")
    model_source = _text_property("ModelSource", "Model name, folder or checkpoint file; empty for the default.")
    device = _text_property("Device", "auto, cuda, mps or cpu.")
    server_url = _text_property("ServerUrl", "Remote inference server; empty to run in Slicer's Python.")
    modality = _text_property("Modality", "auto (read from DICOM, else from intensities), CT or MR.")

    @property
    def modality_override(self) -> str | None:
        """What :attr:`MedicalSAM3SlicerLogic.modality` should be: "CT", "MR", or None for automatic."""
        return _modality_override(self.modality)

    def __init__(self, node):
        self.node = node
        for name, value in DEFAULTS.items():
            if not node.GetParameter(name):
                node.SetParameter(name, value)

    @classmethod
    def from_scene(cls, scene) -> "MedicalSAM3SlicerParameters":
        """The scene's parameter node, created (with defaults) on first use."""
        node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(MODULE_NAME)
            node.SetAttribute("ModuleName", MODULE_NAME)
            node = scene.AddNode(node)
        return cls(node)
