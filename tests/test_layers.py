"""The layout holds: imports go one way, there are no import cycles, the engine and the bridge import no GUI, the web
application imports no Qt and no widget, and no Python file grows past about 500 lines (docs/architecture.md draws the layers).

Every module is parsed with ``ast`` (nothing is imported), so the check costs nothing and runs without torch or
Slicer. The rules are plain functions over an import graph; the ``synthetic`` tests feed them a made-up graph with
one violation of each kind, to show they catch it and are not only passed by today's code.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MedicalSAM3Slicer"
ENGINE = MODULE_DIR / "medsam3"
BRIDGE = MODULE_DIR / "MedicalSAM3SlicerLib"
WEB = MODULE_DIR / "medsam3_web"

# Which engine package may import which. "shared" is medsam3/__init__.py (the version) and medsam3/errors.py.
# Applications -> transports -> interaction -> model -> geometry; files (volume and segmentation files on disk) sit
# beside the transports: both may use interaction and below, neither uses the other. "training" (medsam3 finetune's
# engine: slices made as the engine makes them, SAM 3's losses, the loop) sits beside them too.
# "terminology" (the one table of names, codes, colours and synonyms) needs nothing but "shared"; every layer above
# it may use it.
ALLOWED = {
    "shared": {"shared"},
    "terminology": {"shared", "terminology"},
    "geometry": {"shared", "geometry"},
    "model": {"shared", "terminology", "geometry", "model"},
    "interaction": {"shared", "terminology", "geometry", "model", "interaction"},
    "files": {"shared", "terminology", "geometry", "model", "interaction", "files"},
    "transports": {"shared", "terminology", "geometry", "model", "interaction", "transports"},
    "training": {"shared", "terminology", "geometry", "model", "interaction", "training"},
    "apps": {"shared", "terminology", "geometry", "model", "interaction", "files", "transports", "training", "apps"},
}

GUI_AND_SLICER = ("slicer", "qt", "ctk", "vtk", "MedicalSAM3SlicerLib", "MedicalSAM3SlicerWidgets", "medsam3_web",
                  "trame", "trame_slicer", "__main__")
# The bridge runs under slicer-core (MRML, VTK, no application): no Qt, no CTK, no Slicer GUI module, no widget,
# and no application of the engine.
BRIDGE_FORBIDDEN = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.app",
                    "MedicalSAM3SlicerWidgets", "MedicalSAM3Slicer", "medsam3.apps", "medsam3_web", "trame",
                    "trame_slicer")
# The web application (medsam3 web) sits beside the widget, over the bridge and the engine: slicer-core, VTK and
# trame-slicer, but no Qt, no CTK, no Slicer application and no widget code. `medsam3 web` starts it as a program.
WEB_FORBIDDEN = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.app",
                 "MedicalSAM3SlicerWidgets", "MedicalSAM3Slicer")
# Reasoned exceptions, each one edge (importer, imported): none. The terminology the engine once read from the
# Slicer module (apps/batch/segment_codes.py through importlib) is the engine's own now (medsam3/terminology).
ENGINE_GUI_EXCEPTIONS: set[tuple[str, str]] = set()

# Only medsam3/model/sam3/transformers_patches.py sets attributes on transformers' objects (it lists each patch and its
# reason). In every other module that imports torch or transformers, an attribute set or deleted on anything but
# ``self`` / ``cls`` (assignment, del, setattr, delattr, a write into ``_parameters`` / ``_modules`` / ``__dict__``)
# must be one of these, each (file, target as written) with why it is not a patch of transformers:
PATCH_MODULE = "medsam3/model/sam3/transformers_patches.py"
NOT_A_TRANSFORMERS_PATCH = {
    # torch's own switch for its int8 kernels (not a transformers object)
    ("medsam3/model/sam3/precision.py", "torch.backends.quantized.engine"),
    # the engine's own TransformersSegmentationModel, built by its classmethod
    ("medsam3/model/sam3/transformers_model.py", "model.shares_backbone"),
    ("medsam3/model/sam3/transformers_model.py", "model._capabilities"),
    # configuration values, set on a config object as transformers documents, before it is saved
    ("medsam3/model/sam3/meta_checkpoint/config.py", "current.layer_norm_eps"),
    ("medsam3/model/sam3/meta_checkpoint/convert.py", "config.architectures"),
    ("medsam3/model/sam3/meta_checkpoint/convert.py", "config.dtype"),
    ("medsam3/apps/bench/full_size.py", "model.config.architectures"),
    # after loading, each weight tensor's storage is replaced by a copy in the process's own memory so the weights
    # file's pages can be given back (weight_sharing.release_loading_memory, issue 22): torch tensors, not transformers
    # code, and the values are bit-identical; the marker keeps a tensor from being copied twice
    ("medsam3/model/sam3/weight_sharing.py", "tensor.data"),
    ("medsam3/model/sam3/weight_sharing.py", "tensor._held_in_own_memory"),
    # ctypes' prototype of libc's madvise (same function)
    ("medsam3/model/sam3/weight_sharing.py", "libc.madvise.argtypes"),
    # the batch's own progress reporter
    ("medsam3/apps/batch/ray_runner.py", "progress.workers"),
}

LINE_LIMIT = 520
LINE_LIMIT_EXCEPTIONS: dict[str, int] = {}  # none today; a reasoned exception names the file and its limit


# ------------------------------------------------------------------------------------------------ the graph


def module_name(path: Path) -> str:
    parts = list(path.relative_to(MODULE_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` runs only when the file is a script, never when it is imported."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imported_names(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, absolute; ``from package import submodule`` counts as the submodule.
    ``importlib.import_module("constant")`` counts too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in list(tree.body):
        if _is_main_guard(node):
            tree.body.remove(node)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
    return found


def import_graph(folder: Path) -> dict[str, set[str]]:
    paths = [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_names(p, known) for p in paths}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "medsam3":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] == "errors":
        return "shared"
    if parts[1] not in ALLOWED:
        raise ValueError(f"{module} is in no layer: put it in one of {sorted(ALLOWED)}")
    return parts[1]


# ------------------------------------------------------------------------------------------------ the rules


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(t for t in imported if t.split(".")[0] == "medsam3"):
            if layer_of(target) not in ALLOWED[layer_of(importer)]:
                problems.append(f"{importer} ({layer_of(importer)}) imports {target} ({layer_of(target)})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(t for t in graph.get(node, ()) if t in graph):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def forbidden_imports(graph: dict[str, set[str]], forbidden: tuple[str, ...],
                      exceptions: set[tuple[str, str]] = frozenset()) -> list[str]:
    return [f"{importer} imports {target}"
            for importer, imported in sorted(graph.items()) for target in sorted(imported)
            if any(target == f or target.startswith(f + ".") for f in forbidden)
            and (importer, target) not in exceptions]


def oversized_files(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LINE_LIMIT_EXCEPTIONS.get(relative, LINE_LIMIT):
            problems.append(f"{relative}: {lines} lines (split it along its own seams)")
    return problems


# ------------------------------------------------------------------------------------------------ today's code


@pytest.fixture(scope="module")
def engine_graph():
    return import_graph(ENGINE)


def test_engine_imports_go_one_way(engine_graph):
    assert len(engine_graph) > 80
    assert layer_violations(engine_graph) == []


def test_engine_has_no_import_cycle(engine_graph):
    assert cycles(engine_graph) == []


def test_engine_imports_no_slicer_qt_vtk_or_module_code(engine_graph):
    assert forbidden_imports(engine_graph, GUI_AND_SLICER, ENGINE_GUI_EXCEPTIONS) == []


def test_bridge_imports_no_gui_and_no_application():
    graph = {name: targets for name, targets in import_graph(MODULE_DIR).items()
             if name.split(".")[0] == "MedicalSAM3SlicerLib"}
    assert len(graph) > 10
    assert forbidden_imports(graph, BRIDGE_FORBIDDEN) == []
    assert cycles(graph) == []


def test_web_app_imports_no_qt_and_no_widget():
    graph = {name: targets for name, targets in import_graph(MODULE_DIR).items()
             if name.split(".")[0] == "medsam3_web"}
    assert len(graph) > 5
    assert forbidden_imports(graph, WEB_FORBIDDEN) == []
    assert cycles(graph) == []


def test_no_python_file_is_over_about_500_lines():
    paths = [p for p in ROOT.rglob("*.py") if not {"__pycache__", ".venv", ".git"} & set(p.parts)]
    assert len(paths) > 150
    assert oversized_files(paths) == []


def attribute_writes(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every attribute set or deleted on an object other than ``self`` / ``cls`` in ``path``."""
    writes = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in (sub for t in targets for sub in ast.walk(t)):
            if isinstance(target, ast.Attribute) and isinstance(target.ctx, (ast.Store, ast.Del)) \
                    and not (isinstance(target.value, ast.Name) and target.value.id in ("self", "cls")):
                writes.append((node.lineno, ast.unparse(target)))
            elif isinstance(target, ast.Subscript) and isinstance(target.ctx, (ast.Store, ast.Del)) \
                    and isinstance(target.value, ast.Attribute) \
                    and target.value.attr in ("_parameters", "_buffers", "_modules", "__dict__"):
                writes.append((node.lineno, ast.unparse(target.value)))
        if isinstance(node, ast.Call) and (getattr(node.func, "id", None) in ("setattr", "delattr")
                                           or getattr(node.func, "attr", None) in ("__setattr__", "__delattr__")):
            writes.append((node.lineno, ast.unparse(node.func) + "(" + ast.unparse(node.args[0]) + ", ...)"))
    return sorted(writes)


def transformers_patches_outside_the_adapter(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        if relative == PATCH_MODULE or "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names} | \
            {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        if not any(name.split(".")[0] in ("torch", "transformers") for name in imported if name):
            continue
        found += [f"{relative}:{line}: {target}" for line, target in attribute_writes(path)
                  if (relative, target) not in NOT_A_TRANSFORMERS_PATCH]
    return found


def test_only_the_adapter_module_sets_attributes_on_transformers_objects():
    assert transformers_patches_outside_the_adapter(ENGINE) == []
    assert attribute_writes(ENGINE.parent / PATCH_MODULE), "the adapter module sets nothing: the rule sees nothing"


def test_a_patch_outside_the_adapter_is_caught(tmp_path):
    package = tmp_path / "medsam3" / "model"
    package.mkdir(parents=True)
    (package / "speedup.py").write_text(
        "import torch\n\ndef speed_up(model):\n    model.vision_encoder.forward = lambda x: x\n"
        "    setattr(model, 'flag', True)\n    model.mask_decoder._parameters['w'] = None\n"
        "    self_like = model\n    del self_like.cache\n")
    assert transformers_patches_outside_the_adapter(tmp_path / "medsam3") == [
        "medsam3/model/speedup.py:4: model.vision_encoder.forward", "medsam3/model/speedup.py:5: setattr(model, ...)",
        "medsam3/model/speedup.py:6: model.mask_decoder._parameters", "medsam3/model/speedup.py:8: self_like.cache"]


# ------------------------------------------------------------------------------------------------ the rules catch


def test_synthetic_graph_lower_layer_importing_higher_is_caught():
    graph = {"medsam3.geometry.volume": {"medsam3.errors"},
             "medsam3.model.preprocessing": {"medsam3.geometry.volume", "medsam3.interaction.session"},
             "medsam3.interaction.session": {"medsam3.model.preprocessing"},
             "medsam3.files.seg_nrrd": {"medsam3.transports.backend"},
             "medsam3.transports.backend": {"medsam3.interaction.session"},
             "medsam3.apps.cli": {"medsam3.transports.backend", "medsam3.files.seg_nrrd"}}
    assert layer_violations(graph) == [
        "medsam3.files.seg_nrrd (files) imports medsam3.transports.backend (transports)",
        "medsam3.model.preprocessing (model) imports medsam3.interaction.session (interaction)"]


def test_synthetic_graph_cycles_are_caught():
    graph = {"medsam3.apps.cli": {"medsam3.apps.demo"},
             "medsam3.apps.demo": {"medsam3.apps.arguments", "medsam3.apps.cli"},
             "medsam3.apps.arguments": set(), "medsam3.model.a": {"medsam3.model.a"}}
    assert cycles(graph) == [["medsam3.apps.cli", "medsam3.apps.demo"], ["medsam3.model.a"]]
    del graph["medsam3.apps.demo"]
    graph["medsam3.model.a"] = set()
    assert cycles(graph) == []


def test_synthetic_gui_imports_are_caught():
    engine = {"medsam3.interaction.engine": {"numpy", "qt"}, "medsam3.geometry.volume": {"vtk.util.numpy_support"},
              "medsam3.model.vocabulary": {"slicerio"}}
    assert forbidden_imports(engine, GUI_AND_SLICER) == ["medsam3.geometry.volume imports vtk.util.numpy_support",
                                                         "medsam3.interaction.engine imports qt"]
    web = {"medsam3_web.page": {"trame_slicer.core", "MedicalSAM3SlicerLib.logic", "qt", "MedicalSAM3SlicerWidgets"}}
    assert forbidden_imports(web, WEB_FORBIDDEN) == ["medsam3_web.page imports MedicalSAM3SlicerWidgets",
                                                     "medsam3_web.page imports qt"]
    engine_importing_web = {"medsam3.apps.cli": {"medsam3_web.app", "trame_slicer.core"}}
    assert forbidden_imports(engine_importing_web, GUI_AND_SLICER) == ["medsam3.apps.cli imports medsam3_web.app",
                                                                       "medsam3.apps.cli imports trame_slicer.core"]
    bridge = {"MedicalSAM3SlicerLib.logic": {"slicer", "medsam3.apps.cli", "slicer.util"}}
    assert forbidden_imports(bridge, BRIDGE_FORBIDDEN) == ["MedicalSAM3SlicerLib.logic imports medsam3.apps.cli",
                                                           "MedicalSAM3SlicerLib.logic imports slicer.util"]


def test_main_guard_and_import_module_are_read_as_they_run(tmp_path, monkeypatch):
    package = tmp_path / "medsam3" / "apps"
    package.mkdir(parents=True)
    (tmp_path / "medsam3" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "demo.py").write_text("import importlib\nfrom . import arguments\nfrom .. import __version__\n"
                                     "importlib.import_module('medsam3.transports.backend')\n"
                                     "if __name__ == '__main__':\n    from .cli import main\n")
    (package / "arguments.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "MODULE_DIR", tmp_path)
    graph = import_graph(tmp_path / "medsam3")
    assert graph["medsam3.apps.demo"] == {"importlib", "medsam3.apps.arguments", "medsam3",
                                          "medsam3.transports.backend"}


def test_an_oversized_file_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * (LINE_LIMIT + 1))
    small = tmp_path / "small.py"
    small.write_text("x = 1\n" * LINE_LIMIT)
    assert oversized_files([big, small]) == [f"big.py: {LINE_LIMIT + 1} lines (split it along its own seams)"]
