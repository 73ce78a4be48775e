"""The module's keyboard shortcuts, installed on the main window while the module is shown (enter / exit), chosen
so that none takes a key from Slicer's slice views or from the embedded Segment Editor.

A window-wide ``QShortcut`` wins over the key press the slice view would otherwise get, so a shortcut on a key the
views use takes that key away while the module is shown: "B" took the slice views' "b" (previous slice). The box
tool is therefore Shift+B. Run is bound to both Return keys: Qt names the main one Return and the keypad one Enter,
and the documentation says Ctrl+Enter.
"""

from __future__ import annotations

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("P", "positive_point"), ("N", "negative_point"), ("Shift+B", "box"),
    ("Ctrl+Return", "run"), ("Ctrl+Enter", "run"),
    ("Ctrl+Alt+Z", "undo"), ("Ctrl+Alt+Y", "redo"),
)

# Keys the slice views use (vtkMRMLSliceIntersectionWidget::CreateDefaultTranslationEventBindings, Slicer
# Libs/MRML/DisplayableManager, v5.10.0; "V" with any modifier), and the arrow keys.
SLICE_VIEW_KEYS = frozenset({"G", "T", "F", "B", "V", "Shift+V", "Ctrl+V", "Alt+V", "R", "Left", "Right", "Up",
                             "Down", "[", "]", "{", "}"})
# The embedded Segment Editor's (qMRMLSegmentEditorWidget::installKeyboardShortcuts, v5.10.0): effects 0-9 and
# Shift+0-9, Escape, Space, undo Z / Ctrl+Z, redo Y / Ctrl+Y (Ctrl+Shift+Z on some platforms), the previous / next
# segment keys, and I (source volume intensity mask).
SEGMENT_EDITOR_KEYS = frozenset(
    {str(digit) for digit in range(10)} | {f"Shift+{digit}" for digit in range(10)}
    | {"Esc", "Space", "Z", "Ctrl+Z", "Y", "Ctrl+Y", "Ctrl+Shift+Z", "Q", "W", "/", "*", ",", ".", ">", "<", "I"})


def normalised(keys: str) -> str:
    """One spelling per key combination: modifiers in Qt's order, letters upper case ("shift+b" -> "Shift+B")."""
    parts = keys.split("+") if keys != "+" else ["+"]
    order = {"Ctrl": 0, "Shift": 1, "Alt": 2, "Meta": 3}
    modifiers = sorted((part.capitalize() for part in parts[:-1]), key=lambda name: order.get(name, 9))
    key = parts[-1]
    key = key.upper() if len(key) == 1 else key.capitalize()
    return "+".join([*modifiers, key])


def clashes(shortcuts=SHORTCUTS) -> list[str]:
    """The shortcuts that would take a key from the slice views or the Segment Editor."""
    taken = {normalised(key) for key in SLICE_VIEW_KEYS | SEGMENT_EDITOR_KEYS}
    return [keys for keys, _ in shortcuts if normalised(keys) in taken]
