"""The package's imports, read from the source with ast: no circles, and nothing climbs back up the floors.

Every `import` counts, also those inside functions (a lazy import that closes a circle is still a circle), and
so do the modules a package's `__init__.py` names as strings for lazy loading (edgemb/zoo/__init__.py). The
import of a parent package that Python performs implicitly is not an edge.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "edgemb"

# Floors from the top down: a module imports modules on its own floor or below, never above. Longest prefix wins
# (deploy's helpers `edgemb.stages.deploy_guard` and `edgemb.stages.report_html` live beside the stages but stand
# below them). Every stage lives in edgemb/stages/.
FLOORS: dict[str, tuple[str, ...]] = {
    "command line": ("edgemb.__main__", "edgemb.cli"),
    "deploy": ("edgemb.stages.deploy",),
    "stages": ("edgemb.stages", "edgemb.stages.export", "edgemb.stages.quantize", "edgemb.stages.compile",
               "edgemb.stages.verify", "edgemb.stages.profile"),
    "training": ("edgemb.training",),  # makes the reference weights from the zoo, the tasks and the data
    "what stages run on": ("edgemb.backends", "edgemb.tasks", "edgemb.stages.deploy_guard",
                           "edgemb.stages.report_html",
                           "edgemb.calibration_check", "edgemb.latency_estimate", "edgemb.ethos_u"),
    "models, kernels, devices": ("edgemb.zoo", "edgemb.quant", "edgemb.device"),
    "data": ("edgemb.data",),
    "ground": ("edgemb", "edgemb.errors", "edgemb.progress", "edgemb.quiet", "edgemb.metrics", "edgemb.cache",
               "edgemb.artifacts", "edgemb.locking", "edgemb.onnx_graph", "edgemb.targets", "edgemb.budget",
               "edgemb.hostinfo", "edgemb.limits"),
}
STAGE_FLOORS = ("command line", "deploy", "stages")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module an import of `name` executes: itself, or the nearest package or module above it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> dict[str, int]:
    """Every edgemb module that `module` imports, with the first line that does."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target and target != module and target.split(".")[0] == "edgemb":
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_resolve(alias.name), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in MODULES else _resolve(base), node.lineno)
        elif (path.name == "__init__.py" and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.startswith("edgemb.") and node.value in MODULES):
            add(node.value, node.lineno)  # a lazy facade: import_module("edgemb.zoo.registry")
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def floor_of(module: str) -> str | None:
    """The floor whose longest matching entry names `module` (the bare `edgemb` entry matches only itself)."""
    best, floor = -1, None
    for name, entries in FLOORS.items():
        for entry in entries:
            matches = module == entry or (entry != "edgemb" and module.startswith(entry + "."))
            if matches and len(entry) > best:
                best, floor = len(entry), name
    return floor


def circles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(group: frozenset[str]) -> str:
    """The imports inside one circle, file:line each."""
    ties = [f"{a} -> {b} ({MODULES[a].relative_to(SOURCE.parent)}:{line})" for a in sorted(group)
            for b, line in sorted(GRAPH[a].items()) if b in group]
    return "; ".join(ties)


def test_the_walker_sees_lazy_relative_and_facade_imports():
    # a circle closed inside a function, relative imports and a lazy facade are all edges
    assert "edgemb.zoo.registry" in GRAPH["edgemb.zoo"]
    assert "edgemb.zoo.prepared" in GRAPH["edgemb.zoo.weights"]  # a facade's name outside its own package
    assert "edgemb.stages.quantize" in GRAPH["edgemb.cli"]  # imported inside drive_quantize
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert circles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_circles():
    found = circles(GRAPH)
    assert not found, "import circles: " + " | ".join(describe(group) for group in found)


def test_quant_qdq_and_rounding_do_not_import_each_other():
    # the circle of #20: rounding took `layers` from qdq, which takes RoundedLayer from rounding; the layer walk now
    # lives below both (edgemb/quant/quantizable.py), so the QDQ builder reads the rounding's output and not back
    assert "edgemb.quant.qdq" not in GRAPH["edgemb.quant.rounding"]
    assert "edgemb.quant.quantizable" in GRAPH["edgemb.quant.rounding"]
    pair = {"edgemb.quant.qdq", "edgemb.quant.rounding"}
    assert not [group for group in circles(GRAPH) if pair <= group], describe(frozenset(pair))


def test_every_module_stands_on_a_floor():
    lost = [m for m in MODULES if floor_of(m) is None]
    assert not lost, f"place {lost} on a floor in tests/test_imports.py FLOORS"


def test_no_import_climbs_back_up():
    order = list(FLOORS)
    climbs = defaultdict(list)
    for module, targets in GRAPH.items():
        here = order.index(floor_of(module) or "command line")
        for target, line in targets.items():
            there = order.index(floor_of(target) or "command line")
            if there < here:
                climbs[f"{floor_of(module)} -> {floor_of(target)}"].append(
                    f"{module} imports {target} ({MODULES[module].relative_to(SOURCE.parent)}:{line})")
    assert not climbs, "imports that climb up a floor: " + "; ".join(
        f"[{k}] " + ", ".join(v) for k, v in sorted(climbs.items()))


def test_support_code_never_imports_a_stage():
    # the rule the floors exist for, spelled out: below the stages nothing reaches a stage, deploy or the CLI
    stages = {m for m in MODULES if floor_of(m) in STAGE_FLOORS}
    support = set(MODULES) - stages
    offenders = [f"{m} -> {t}" for m in sorted(support) for t in GRAPH[m] if t in stages]
    assert not offenders, f"support code imports a stage: {offenders}"


def test_every_module_in_the_stages_package_is_named_on_its_floor():
    # `edgemb.stages` on the stages floor would otherwise make any new file there a stage by default, free of the
    # rules support code obeys: a helper dropped beside the stages must be placed (as deploy_guard is) on purpose
    named = {entry for entries in FLOORS.values() for entry in entries}
    loose = [m for m in MODULES if m.startswith("edgemb.stages.") and m not in named]
    assert not loose, f"name {loose} in tests/test_imports.py FLOORS (a stage, or the floor it stands on)"


def test_the_stages_package_face_imports_nothing():
    # `import edgemb.stages` must stay light (the CLI imports stages lazily so `--help` is fast)
    assert not GRAPH["edgemb.stages"], f"edgemb/stages/__init__.py imports {sorted(GRAPH['edgemb.stages'])}"


def test_every_stage_is_in_the_stages_package():
    # one visible place for the pipeline: no stage (nor a parallel copy of one) outside edgemb/stages/
    stray = [m for m in MODULES if floor_of(m) in ("deploy", "stages") and not m.startswith("edgemb.stages")]
    assert not stray, f"stages outside edgemb/stages/: {stray}"


def test_support_code_outside_the_stages_package_never_reaches_into_it():
    # below the stages, nothing outside edgemb/stages/ imports from it, not even deploy's helpers there
    support = {m for m in MODULES if floor_of(m) not in STAGE_FLOORS and not m.startswith("edgemb.stages")}
    offenders = [f"{m} -> {t}" for m in sorted(support) for t in GRAPH[m]
                 if t == "edgemb.stages" or t.startswith("edgemb.stages.")]
    assert not offenders, f"support code imports from edgemb.stages: {offenders}"


def test_nothing_of_the_project_imports_through_the_weights_facade():
    # edgemb.zoo.weights re-exports catalog/fetch/load and the prepared model for users' imports written against the
    # old single module; the project itself imports each name from its home, so the facade stays only that
    facade = "edgemb.zoo.weights"
    root = SOURCE.parent
    files = {m: p for m, p in MODULES.items() if not m.startswith(facade + ".")}
    for folder in ("scripts", "tests"):
        files.update({f"{folder}.{p.stem}": p for p in sorted((root / folder).glob("*.py"))
                      if p.name != "test_weights.py"})  # test_weights.py tests the facade itself
    offenders = [f"{p.relative_to(root)}:{_imports(m, p)[facade]}" for m, p in files.items()
                 if m != facade and facade in _imports(m, p)]
    assert not offenders, f"import these names from the module that defines them, not {facade}: {offenders}"
