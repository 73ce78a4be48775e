"""One terminology for every application: typed target names -> segment name, colour and SNOMED CT codes.

:mod:`.table` reads ``terminology.json`` (names, codes, colours, spellings, side words). The Slicer module, ``medsam3
segment``, ``medsam3 batch`` and the model's vocabulary (``medsam3.model.vocabulary``, whose side words and concept
names come from here) all resolve a typed name through it, so a name gets the same code wherever it is typed.
Imports nothing of the engine but ``errors``: every other layer may use it.
"""

from .table import (EMPTY_CODE, TABLE_PATH, Code, Terminology, TerminologyTable, default_table,  # noqa: F401
                    parse_serialized)
