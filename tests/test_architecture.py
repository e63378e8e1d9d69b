"""Layout rules for the `distill` package, checked statically with `ast` (nothing is imported).

Every module under distill/ belongs to exactly one part (PARTS below). Every import counts:
module level and inside functions, `import x`, `from x import y`, relative imports.
`from distill.pkg import name` counts as an import of `distill.pkg.name` when that is a module,
else of `distill.pkg`.

Rules:
1. No import cycles among distill modules; a package `__init__` importing its own submodules is ignored.
2. `typer`, `click` and `rich` (the terminal: commands, progress bars, tables) are imported only in `cli`.
3. `verify` imports no `datasets`, no `huggingface_hub`, nothing from artifacts, engines, stages,
   benchmarks, cli, models.
4. `stages` never import `cli`.
5. `engines` import no `stages` and no `verify`.
6. `artifacts` import no `stages`, no `engines`, no `cli`.
7. Nothing outside `cli` imports `cli`, except distill/__main__.py.
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from pathlib import Path

# Part -> paths relative to the repo root; an entry ending in "/" covers everything below it.
PARTS: dict[str, tuple[str, ...]] = {
    "cli": ("distill/cli/",),
    "core": ("distill/__init__.py", "distill/__main__.py", "distill/config.py", "distill/errors.py", "distill/think.py",
             "distill/environment.py", "distill/conversation.py", "distill/log.py"),
    "artifacts": ("distill/artifacts/",),
    "models": ("distill/models/",),
    "engines": ("distill/engines/",),
    "verify": ("distill/verify/",),
    "benchmarks": ("distill/benchmarks.py",),
    "stages": ("distill/stages/",),
}

REPO = Path(__file__).resolve().parent.parent


def module_name(rel_path: str) -> str:
    """'distill/a/b.py' -> 'distill.a.b'; 'distill/a/__init__.py' -> 'distill.a'."""
    parts = rel_path[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Every module `module` imports (anywhere in its body), resolved against the `known` distill modules."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "distill":
                found.add(target)
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(module)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    """distill module -> the modules it imports (distill ones resolved, third-party ones as written)."""
    files = {p.relative_to(REPO).as_posix(): p for p in sorted((REPO / "distill").rglob("*.py"))}
    known = {module_name(rel) for rel in files}
    return {module_name(rel): read_imports(path.read_text(encoding="utf-8"), module_name(rel),
                                           rel.endswith("/__init__.py"), known)
            for rel, path in files.items()}


def module_path(module: str) -> str:
    rel = module.replace(".", "/")
    return f"{rel}/__init__.py" if (REPO / rel / "__init__.py").exists() else f"{rel}.py"


def parts_of(module: str) -> list[str]:
    path = module_path(module)
    return [part for part, entries in PARTS.items()
            if any(path == e or (e.endswith("/") and path.startswith(e)) for e in entries)]


def part_of(module: str) -> str | None:
    found = parts_of(module)
    return found[0] if len(found) == 1 else None


def edges_violating(src_parts: set[str], forbidden_parts: set[str] = frozenset(),
                    forbidden_libs: set[str] = frozenset(), exempt: set[str] = frozenset()) -> list[str]:
    """'src -> target' for each import from a module in `src_parts` into a forbidden part or library."""
    bad = []
    for module, imports in sorted(graph().items()):
        if part_of(module) not in src_parts or module in exempt:
            continue
        for target in sorted(imports):
            top = target.split(".")[0]
            if (top == "distill" and part_of(target) in forbidden_parts) or top in forbidden_libs:
                bad.append(f"{module} -> {target}")
    return bad


def fail_message(rule: str, items: list[str]) -> str:
    return f"{rule} ({len(items)}):\n  " + "\n  ".join(items)


def test_import_reader_sees_function_level_relative_and_submodule_imports():
    source = (
        "import os\n"
        "from distill.x import submodule, helper\n"
        "from . import sibling\n"
        "from ..y import thing\n"
        "def f():\n"
        "    import typer\n"
        "    from distill.z.deep import name\n"
    )
    known = {"distill", "distill.x", "distill.x.submodule", "distill.a", "distill.a.b", "distill.a.b.sibling",
             "distill.a.y", "distill.z", "distill.z.deep"}
    got = read_imports(source, "distill.a.b.mod", False, known)
    assert got == {"os", "typer", "distill.x.submodule", "distill.x", "distill.a.b.sibling", "distill.a.y",
                   "distill.z.deep"}
    # In a package __init__, `from . import x` is relative to the package itself.
    assert read_imports("from . import b\n", "distill.a", True, known) == {"distill.a.b"}


def test_reader_found_the_package():
    assert len(graph()) > 30, f"only {len(graph())} modules found under distill/"
    assert any(imports for imports in graph().values())


def test_every_module_belongs_to_exactly_one_part():
    orphans = [f"{m} ({module_path(m)})" for m in sorted(graph()) if not parts_of(m)]
    doubles = [f"{m} in {parts_of(m)}" for m in sorted(graph()) if len(parts_of(m)) > 1]
    assert not orphans and not doubles, f"modules in no part: {orphans}; modules in several parts: {doubles}"


def test_no_import_cycles():
    # Only distill -> distill edges; a package's __init__ importing its own submodules is not a cycle.
    modules = graph()
    edges = {m: {t for t in imports if t in modules and not t.startswith(m + ".")} for m, imports in modules.items()}

    def shortest_path(start: str, goal: str) -> list[str] | None:
        previous, queue = {start: None}, deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                path = []
                while node is not None:
                    path.append(node)
                    node = previous[node]
                return path[::-1]
            for nxt in sorted(edges[node]):
                if nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        return None

    cycles = set()
    for module in sorted(edges):
        for target in sorted(edges[module]):
            back = shortest_path(target, module)
            if back:
                loop = [module] + back[:-1]  # module -> target -> ... (-> module)
                first = loop.index(min(loop))
                loop = loop[first:] + loop[:first]
                cycles.add(" -> ".join(loop + [loop[0]]))
    assert not cycles, fail_message("import cycles (module -> imported module -> ...)", sorted(cycles))


def test_typer_click_and_rich_only_in_cli():
    bad = edges_violating(set(PARTS) - {"cli"} | {None}, forbidden_libs={"typer", "click", "rich"})
    assert not bad, fail_message("typer/click/rich imported outside cli", bad)


def test_verify_stays_independent():
    bad = edges_violating({"verify"}, forbidden_parts={"artifacts", "engines", "stages", "benchmarks", "cli", "models"},
                          forbidden_libs={"datasets", "huggingface_hub"})
    assert not bad, fail_message("verify imports forbidden modules", bad)


def test_stages_do_not_import_cli():
    bad = edges_violating({"stages"}, forbidden_parts={"cli"})
    assert not bad, fail_message("stages -> cli", bad)


def test_engines_do_not_import_stages_or_verify():
    bad = edges_violating({"engines"}, forbidden_parts={"stages", "verify"})
    assert not bad, fail_message("engines import stages/verify", bad)


def test_artifacts_do_not_import_stages_engines_or_cli():
    bad = edges_violating({"artifacts"}, forbidden_parts={"stages", "engines", "cli"})
    assert not bad, fail_message("artifacts import stages/engines/cli", bad)


def test_only_cli_and_main_import_cli():
    bad = edges_violating(set(PARTS) - {"cli"} | {None}, forbidden_parts={"cli"}, exempt={"distill.__main__"})
    assert not bad, fail_message("imports of cli from outside cli", bad)
