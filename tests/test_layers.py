"""The package's folders are its layers: a module imports only from its own subpackage or from layers below it
(top-level imports and imports inside functions alike), and importing the package or reading run folders needs no
TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import melanoma_utils

#: Bottom to top. A module in layer i may import from layers 0..i.
LAYERS: tuple[tuple[str, ...], ...] = (("config", "atomic", "versions", "progress", "lazy"), ("data",), ("pipeline",), ("evaluation",),
                                       ("models",), ("runs",), ("study",), ("reports",), ("cli",), ("__main__", "__init__"))
PKG = Path(melanoma_utils.__file__).parent


def _layer(parts: tuple[str, ...]) -> int:
    return next(i for i, names in enumerate(LAYERS) if parts[0] in names)


def _imports(path: Path) -> list[tuple[int, tuple[str, ...]]]:
    """``(line, target parts)`` of every import of a package module in ``path``, relative or absolute."""
    return _imports_in(path.read_text(), path.relative_to(PKG).with_suffix("").parts)


def _imports_in(source: str, here: tuple[str, ...]) -> list[tuple[int, tuple[str, ...]]]:
    """:func:`_imports` of the ``source`` of the package module ``here`` (its path parts)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:-node.level] if len(here) >= node.level else ()
                mod = (*base, *(node.module.split(".") if node.module else ()))
                targets = [(*mod, a.name) for a in node.names]  # a name may be a module (``from . import x``)
            elif node.module and node.module.split(".")[0] == "melanoma_utils":
                targets = [(*node.module.split(".")[1:], a.name) for a in node.names]
            else:
                continue
            out += [(node.lineno, t) for t in targets if t]
        elif isinstance(node, ast.Import):  # ``import melanoma_utils.runs.run`` (as ...)
            out += [(node.lineno, tuple(a.name.split(".")[1:])) for a in node.names
                    if a.name.split(".")[0] == "melanoma_utils" and "." in a.name]
    return out


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = []
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        own = _layer(parts)
        for line, target in _imports(path):
            if _layer(target) > own:
                upward.append(f"{path.relative_to(PKG)}:{line} imports {'.'.join(target)}")
    assert not upward, "imports running upward:\n" + "\n".join(upward)
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == {
        "pipeline", "data", "evaluation", "models", "runs", "study", "reports", "cli"}


def test_each_subpackage_says_what_lives_there() -> None:
    for init in PKG.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Modules:" in doc, init
        listed = {m.strip("`, .") for m in doc.split("Modules:")[1].split("\n")[0].split(",")}
        assert listed == {p.stem for p in init.parent.glob("*.py") if p.stem != "__init__"}, init


def test_light_imports_stay_free_of_tensorflow() -> None:
    code = ("import sys, melanoma_utils, melanoma_utils.runs.runfolder, melanoma_utils.data, melanoma_utils.evaluation, "
            "melanoma_utils.models.features, melanoma_utils.cli; from melanoma_utils.runs import TrainConfig; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def _module_of(parts: tuple[str, ...]) -> str | None:
    """The package module an import target names (``('runs', 'run', 'Run')`` → ``runs.run``); ``None`` for a package's
    ``__init__`` or a name outside the package's files."""
    for n in range(len(parts), 0, -1):
        if (PKG.joinpath(*parts[:n]).with_suffix(".py")).is_file():
            return ".".join(parts[:n])
    return None


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports, at the top or inside functions."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        me = ".".join(path.relative_to(PKG).with_suffix("").parts)
        graph[me] = {m for _, t in _imports(path) if (m := _module_of(t)) and m != me}
    return graph


def test_no_two_modules_import_each_other_even_inside_functions() -> None:
    graph = import_graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert not pairs, "modules importing each other: " + "; ".join(f"{a} <-> {b}" for a, b in pairs)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` of any length: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_of_any_length_even_inside_functions() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds one
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_plain_import_statements_of_the_package_are_read_too() -> None:
    source = "import melanoma_utils.runs.run as r\nimport os\nfrom ..evaluation import metrics\n"
    assert _imports_in(source, ("data", "probe")) == [(1, ("runs", "run")), (3, ("evaluation", "metrics"))]


def test_only_the_run_folder_module_spells_a_run_folders_file_names() -> None:
    """RunLayout owns the run folder's format: changing a file name is one edit. ``metrics.json`` is also the name of
    ``evaluate``'s report file (another folder), spelled by its writer."""
    from melanoma_utils.runs.runfolder import RunLayout

    names = [RunLayout.MODEL, RunLayout.ENCODER, RunLayout.CONFIG, RunLayout.VAL_PREDICTIONS, RunLayout.MODEL_CARD,
             RunLayout.ENSEMBLE, RunLayout.RECORD, RunLayout.HISTORY, RunLayout.FINGERPRINT, RunLayout.BACKUP,
             RunLayout.MODEL_SHARED, RunLayout.HEAD_WEIGHTS, RunLayout.SHARED_STORE, "main.npz", "freeze.npz", "finetune.npz"]
    allowed = {("runs", "runfolder.py")}
    spelled = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                spelled.append(f"{'/'.join(rel)}:{node.lineno} {node.value!r}")
    assert not spelled, "run-folder file names spelled outside runs/runfolder.py:\n" + "\n".join(spelled)


def test_the_lock_file_pins_every_requirement_within_its_range() -> None:
    """requirements-lock.txt (what `make setup` and CI install) pins each package of requirements.txt (the ranges users
    get) exactly, inside its range: the two files cannot drift apart silently."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = PKG.parent
    lines = lambda name: [ln.split("#")[0].strip() for ln in (root / name).read_text().splitlines()  # noqa: E731
                          if ln.split("#")[0].strip()]
    pinned = {}
    for line in lines("requirements-lock.txt"):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements-lock.txt: {line} is not an exact pin"
        pinned[canonicalize_name(req.name)] = spec.version
    for line in lines("requirements.txt"):
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pinned, f"requirements-lock.txt lacks {req.name} (run make lock)"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"requirements-lock.txt pins {req.name}=={pinned[name]}, outside requirements.txt's {req.specifier}")


def test_evaluation_and_reading_tables_need_no_opencv() -> None:
    """evaluation/ (metrics, calibration, clinical reports, model cards) and the data loaders work on tables: importing
    them loads neither OpenCV nor TensorFlow (an image library is imported only where an image is read)."""
    code = ("import sys; import melanoma_utils.evaluation.clinical, melanoma_utils.evaluation.metrics, "
            "melanoma_utils.evaluation.calibration, melanoma_utils.evaluation.modelcard, "
            "melanoma_utils.evaluation.shortcuts, melanoma_utils.data.isic, melanoma_utils.data.confounds; "
            "print(sorted(m for m in ('cv2', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def _reimports(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every import inside a function of a name the module already imports at its top level."""
    tree = ast.parse(source)

    def keys(node: ast.Import | ast.ImportFrom) -> list[tuple[str | None, str, int]]:
        module, level = (node.module, node.level) if isinstance(node, ast.ImportFrom) else (None, 0)
        return [(module, a.asname or a.name, level) for a in node.names]

    top = {k for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for k in keys(node)}
    return [(sub.lineno, k[1]) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for sub in ast.walk(fn) if isinstance(sub, (ast.Import, ast.ImportFrom)) for k in keys(sub) if k in top]


def test_no_function_imports_again_what_its_module_already_imports() -> None:
    planted = "import json\nfrom .a import b\n\ndef f():\n    import json\n    from .a import b\n    from .a import c\n"
    assert _reimports(planted) == [(5, "json"), (6, "b")]
    found = {f"{p.relative_to(PKG)}:{line} {name}" for p in PKG.rglob("*.py") for line, name in _reimports(p.read_text())}
    assert not found, sorted(found)


def _long_signatures(source: str, limit: int = 8) -> list[tuple[int, str, int]]:
    """``(line, function, parameters)`` of every function taking more than ``limit`` parameters (``self``/``cls``
    and ``*args``/``**kwargs`` not counted: options beyond a spec travel as its overrides)."""
    out = []
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = fn.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            n = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
            if n > limit:
                out.append((fn.lineno, fn.name, n))
    return out


def test_no_function_takes_more_than_eight_parameters() -> None:
    planted = "def f(a, b, c, d, e, f, g, h, *, i):\n    pass\n\ndef g(self, a, b, c, d, e, f, g, h, **kw):\n    pass\n"
    assert _long_signatures(planted) == [(1, "f", 9)]
    found = [f"{p.relative_to(PKG)}:{line} {name} ({n})" for p in PKG.rglob("*.py")
             for line, name, n in _long_signatures(p.read_text())]
    assert not found, found
