"""Which 3D Slicer versions the module supports, checked before anything is installed or imported.

Supported: 3D Slicer 5.10 and later, whose Python is 3.12 (``Slicer_REQUIRED_PYTHON_VERSION "3.12.10"`` in
Slicer's ``CMakeLists.txt`` at tag v5.10.0). Slicer 5.8 ships Python 3.9.10 (same file at v5.8.1), which the
model stack cannot run (transformers 5 needs Python 3.11; scipy, pydicom 3 and highdicom need 3.10 or later),
and lacks APIs the exports use (``vtkMRMLColorTableNode::SetTerminologyFromString`` and CSV colour tables are
new in 5.10). On an older Slicer the module shows :func:`unsupported_slicer_message` in one line instead of
offering an install that would fail halfway.

This file uses only the standard library and Python 3.6 syntax, so it loads in any Slicer.
"""

import sys

MINIMUM_SLICER_VERSION = (5, 10)
MINIMUM_PYTHON_VERSION = (3, 11)  # what the pinned packages need; Slicer 5.10 has 3.12
DOWNLOAD_URL = "https://download.slicer.org"


def running_slicer_version():
    """(major, minor) of the running Slicer application, or None outside Slicer (e.g. slicer-core in pytest).

    ``slicer.app.majorVersion`` / ``minorVersion`` are properties of ``qSlicerCoreApplication``
    (Base/QTCore/qSlicerCoreApplication.h).
    """
    try:
        import slicer

        app = slicer.app
        return (int(app.majorVersion), int(app.minorVersion))
    except Exception:  # no application (slicer-core), or not in Slicer at all
        return None


def unsupported_slicer_message(slicer_version=None, python_version=None):
    """One line saying why this Slicer cannot run the module and what to do, or None when it is supported.

    ``slicer_version`` (major, minor) defaults to the running application's (unknown outside Slicer: then only
    Python is checked); ``python_version`` defaults to ``sys.version_info``.
    """
    if slicer_version is None:
        slicer_version = running_slicer_version()
    if python_version is None:
        python_version = sys.version_info
    python_version = tuple(python_version)[:2]
    minimum = "{}.{}".format(*MINIMUM_SLICER_VERSION)
    if slicer_version is not None and tuple(slicer_version)[:2] < MINIMUM_SLICER_VERSION:
        return ("Medical SAM3 needs 3D Slicer {} or later; this is Slicer {}.{} (Python {}.{}). Install the "
                "current Slicer from {}.".format(minimum, slicer_version[0], slicer_version[1], python_version[0],
                                                python_version[1], DOWNLOAD_URL))
    if python_version < MINIMUM_PYTHON_VERSION:
        return ("Medical SAM3 needs Python {}.{} or later (3D Slicer {} or later); this Python is {}.{}. Install "
                "the current Slicer from {}.".format(MINIMUM_PYTHON_VERSION[0], MINIMUM_PYTHON_VERSION[1], minimum,
                                                     python_version[0], python_version[1], DOWNLOAD_URL))
    return None
