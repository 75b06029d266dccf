"""Import tiers: `import sentflow` loads no image model, data, checkpoint or grid code and changes no torch
setting; the layer modules import only layer modules; the training loop imports no image-tier module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import sentflow.flows

FLOWS = Path(sentflow.flows.__file__).parent
LAYERS = {"base", "actnorm", "invconv", "coupling", "reshape", "preprocess", "nets", "priors"}
IMAGE_TIER = {"models", "iresnet", "fvae", "data", "checkpoint", "grid", "checks"}


def flows_imports(module: str) -> set[str]:
    """The sentflow.flows modules that `module` imports, read from its source (a static, complete answer)."""
    tree = ast.parse((FLOWS / f"{module}.py").read_text())
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {n.removeprefix("sentflow.flows.") for n in names if n.startswith("sentflow.flows.")}


def test_import_sentflow_loads_no_image_tier_module_and_keeps_torch_threads() -> None:
    probe = (
        "import json, sys, torch; before = torch.get_num_threads(); import sentflow, sentflow.calibration.bertflow; "
        "print(json.dumps({'modules': [m for m in sys.modules if m.startswith('sentflow.flows.')], "
        "'threads': [before, torch.get_num_threads()]}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    loaded = {m.removeprefix("sentflow.flows.") for m in seen["modules"]}
    assert not loaded & IMAGE_TIER, loaded
    assert {"actnorm", "coupling", "train"} <= loaded  # BertFlow is built from the shared layers and loop
    assert seen["threads"][0] == seen["threads"][1]


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_a_layer_module_imports_only_layer_modules(module: str) -> None:
    assert flows_imports(module) <= LAYERS


def test_the_training_loop_imports_no_image_tier_module() -> None:
    assert flows_imports("train") <= LAYERS


def test_every_documented_flows_name_resolves() -> None:
    assert all(getattr(sentflow.flows, name) is not None for name in sentflow.flows.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = sentflow.flows.Nope


def sentflow_import_graph() -> dict[str, set[str]]:
    """Every sentflow module and the sentflow modules it imports anywhere (top level or inside functions)."""
    root = Path(sentflow.__file__).parent
    modules = {
        ".".join(("sentflow", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        found |= {f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                  and node.module for a in node.names}
        found |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and m != "sentflow"}
    return graph


def test_no_module_imports_form_a_cycle() -> None:
    graph = sentflow_import_graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


# The package floors, bottom first: a room (a subpackage, or a module directly under sentflow) imports only rooms
# on lower floors, or its own modules. `sentflow` itself (the top-level names) stands above them all.
FLOORS = [
    {"_version", "errors"},
    {"parsing", "data_root"},
    {"extras", "runtime", "protocols"},
    {"files"},
    {"tasks"},
    {"flows"},
    {"calibration"},
    {"encoding"},
    {"pipeline"},
    {"streaming"},
    {"search"},
    {"evaluation"},
    {"distributed", "integrations"},
    {"fitting"},
]


def room(module: str) -> str:
    """The room of a sentflow module: its subpackage, or the module itself when it sits directly under sentflow."""
    return module.split(".")[1] if module != "sentflow" else "sentflow"


def test_every_room_has_a_floor() -> None:
    rooms = {room(module) for module in sentflow_import_graph()} - {"sentflow"}
    assert rooms == set().union(*FLOORS), "place each new package on a floor of FLOORS"


def test_packages_import_only_downward() -> None:
    floor = {name: level for level, names in enumerate(FLOORS) for name in names}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in sentflow_import_graph().items()
        if module != "sentflow"
        for target in targets
        if room(target) != room(module) and floor[room(target)] >= floor[room(module)]
    )
    assert not upward, "imports that do not point down a floor:\n" + "\n".join(upward)


def test_every_public_module_is_in_the_api_reference() -> None:
    reference = Path(__file__).resolve().parents[1] / "docs" / "reference"
    shown = {line.split()[1] for page in reference.glob("*.md") for line in page.read_text().splitlines()
             if line.startswith("::: ")}
    public = {m for m in sentflow_import_graph() if not any(part.startswith("_") for part in m.split("."))}
    missing = sorted(m for m in public if not any(s == m or s.startswith(m + ".") for s in shown))
    assert not missing, "add these modules to a page of docs/reference: " + ", ".join(missing)
