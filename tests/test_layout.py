"""The library's layout, as the README's layout table writes it: packages in layers, a module
per chapter above the machinery, no import circles, no upward imports, and function-level
imports only where an import is heavy (and saying so). Every import counts: module level,
inside functions, and the package ``__init__`` files an import runs."""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

from spaceevo_lib.config import chapters
from spaceevo_lib.settings import project_root

LIB = project_root() / "spaceevo_lib"

#: The layer order, lowest first (README, "Layout"): a package imports only its own layer or
#: lower ones, and never in a circle.
LAYERS = (
    ("base", {"_version", "_io", "settings", "host", "configs"}),
    ("chapter list", {"config"}),
    ("run folders and the book", {"store", "book"}),
    ("data", {"data"}),
    ("spaces", {"space"}),
    ("networks and space search", {"nn", "search"}),
    ("exporters", {"export"}),
    ("latency", {"latency"}),
    ("quantization and predictors", {"quant", "predictor"}),
    ("training", {"train"}),
    ("supernet", {"supernet"}),
    ("block-wise distillation", {"blockkd"}),
    ("figures", {"report"}),
    ("chapters", {"chapters"}),
    ("entry points", {"cli", "<root>"}),
)
LAYER = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}

#: Third-party packages whose import is heavy (seconds, or a runtime's native libraries):
#: the only imports a function may make instead of its module.
HEAVY = {"torch", "torchvision", "tensorflow", "keras", "ai_edge_litert", "onnx", "onnxruntime",
         "onnxscript", "matplotlib", "seaborn", "sklearn", "papermill", "jupyter_book",
         "playwright", "triton"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in LIB.rglob("*.py")}


def package_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def ancestors(mod: str) -> set[str]:
    parts = mod.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(mod: str):
    """(node, target, names, inside a function) of every import of ``mod`` that runs (not those
    under ``if TYPE_CHECKING``); ``target`` is the absolute module name (``from . import x``
    resolved)."""
    path = modules()[mod]
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    in_function, type_only = set(), set()
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(f) if n is not f}
        elif isinstance(f, ast.If) and "TYPE_CHECKING" in ast.unparse(f.test):
            type_only |= {id(n) for n in ast.walk(f) if n is not f}  # never run
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node, target, [a.name for a in node.names], id(node) in in_function
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name, [], id(node) in in_function


@cache
def graph() -> dict[str, set[str]]:
    """Module -> library modules it imports (a ``from pkg import sub`` of a submodule counts as
    that submodule; importing any module also runs its packages' ``__init__``)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for mod in modules():
        mine = ancestors(mod) | {mod}
        for _, target, names, _ in imports_of(mod):
            if not target.startswith("spaceevo_lib"):
                continue
            hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules()]
            for t in hits + ([target] if len(hits) < len(names) or not names else []):
                if t != mod:
                    edges[mod].add(t)
            for a in ancestors(target):
                if a in modules() and a not in mine:
                    edges[mod].add(a)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    packages = {package_of(m) for m in modules()}
    assert packages == set(LAYER), (packages ^ set(LAYER))


def test_every_library_import_names_a_module_that_exists():
    bad = []
    for mod in modules():
        for node, target, names, _ in imports_of(mod):
            if target.startswith("spaceevo_lib") and target not in modules():
                bad.append(f"{mod}:{node.lineno} imports {target}")
    assert not bad, bad


def test_no_import_circles_between_files():
    assert cycles(graph()) == []


def test_no_import_circles_between_packages():
    pkg_edges: dict[str, set[str]] = defaultdict(set)
    for a, bs in graph().items():
        for b in bs:
            if package_of(a) != package_of(b):
                pkg_edges[package_of(a)].add(package_of(b))
    assert cycles(pkg_edges) == []


def test_no_package_imports_a_higher_layer():
    upward = sorted(f"{a} -> {b}" for a, bs in graph().items() for b in bs
                    if LAYER[package_of(b)] > LAYER[package_of(a)])
    assert upward == []


def test_stage_packages_never_import_a_chapter():
    assert not [f"{a} -> {b}" for a, bs in graph().items() for b in bs
                if package_of(b) == "chapters" and package_of(a) not in ("chapters", "cli",
                                                                         "<root>")]


def test_no_private_name_is_imported_from_another_package():
    bad = []
    for mod in modules():
        for node, target, names, _ in imports_of(mod):
            if not target.startswith("spaceevo_lib") or package_of(target) == package_of(mod):
                continue
            private = [n for n in names if n.startswith("_") and n not in ("__version__",)]
            if private or any(p.startswith("_") and p not in ("_io", "_version")
                              for p in target.split(".")[1:]):
                bad.append(f"{mod}:{node.lineno} from {target} import {', '.join(names)}")
    assert not bad, bad


@cache
def heavy_closure(mod: str) -> frozenset[str]:
    """The heavy packages importing library module ``mod`` loads (its module-level imports,
    transitively, its packages' ``__init__`` included)."""
    todo, seen, found = [mod], set(), set()
    while todo:
        m = todo.pop()
        if m in seen or m not in modules():
            continue
        seen.add(m)
        todo += [a for a in ancestors(m) if a in modules()]
        for _, target, names, inside in imports_of(m):
            if inside:
                continue
            if target.split(".")[0] in HEAVY:
                found.add(target.split(".")[0])
            elif target.startswith("spaceevo_lib"):
                todo += [f"{target}.{n}" for n in names] + [target] + list(ancestors(target))
    return frozenset(found)


def import_closure(target: str, names: list[str]) -> frozenset[str]:
    """The heavy packages an import statement loads."""
    if not target.startswith("spaceevo_lib"):
        return frozenset({target.split(".")[0]} & HEAVY)
    mods = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules()] + [target]
    mods += [a for a in ancestors(target) if a in modules()]
    return frozenset().union(*(heavy_closure(m) for m in mods if m in modules()))


def test_function_level_imports_are_heavy_and_say_so():
    """An import inside a function loads a heavy package that its module does not load already,
    and says so in a comment on its line; any other import belongs at the module's top."""
    light, silent = [], []
    for mod, path in modules().items():
        lines = path.read_text().splitlines()
        own = heavy_closure(mod)
        for node, target, names, inside in imports_of(mod):
            if not inside:
                continue
            where = f"{mod}:{node.lineno} ({target})"
            if not import_closure(target, names) - own:
                light.append(where)
            elif not any("heavy" in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
                silent.append(where)
    assert not light, f"imports inside functions that add nothing heavy (move them up): {light}"
    assert not silent, f"heavy imports inside functions without a '# heavy: ...' note: {silent}"


NOTEBOOK_IMPORT = re.compile(r"^\s*(?:from\s+(\S+)\s+import\s+(.+)|import\s+(\S+))", re.M)


@pytest.mark.parametrize("name", list(chapters()))
def test_a_notebook_imports_its_chapter_module_and_machinery_only(name):
    """No other chapter's module, no mid-notebook imports, one name per package."""
    nb = json.loads((project_root() / "notebooks" / chapters()[name].notebook).read_text())
    code = [("".join(c["source"]), i) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code"]
    first = code[0][1]
    for src, i in code:
        for frm, what, imp in NOTEBOOK_IMPORT.findall(src):
            assert i == first, f"{name}: an import in cell {i}, not in the first cell"
            mod = frm or imp
            if mod == "spaceevo_lib.chapters":
                got = {w.split(" as ")[0].strip() for w in what.split(",")}
                assert got == {name}, f"{name} imports chapter module(s) {got}"
            elif mod.startswith("spaceevo_lib.chapters."):
                assert mod == f"spaceevo_lib.chapters.{name}", f"{name} imports {mod}"
    if (LIB / "chapters" / f"{name}.py").is_file():
        assert "from spaceevo_lib.chapters import " + name in code[0][0]
