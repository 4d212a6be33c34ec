"""pydl's Python layer stands in floors, each importing only from the floors below it
(docs: DESIGN.md, "Data flow"). This test reads every module of pydl with ast, its
top-level imports and those inside functions alike, and fails naming the module and
the import when one reaches a floor above its own.

`python tests/test_import_floors.py` prints the graph: module -> module import
counts between floors, and every upward arrow.
"""
import ast
import collections
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pydl"

# The floors, lowest first: (name, module prefixes). A module stands on the floor of
# the longest prefix that names it or a package above it.
FLOORS = (
    # The compiled modules; the output-size rules of convolution and pooling are
    # pydl._C's (csrc/shapes.cpp, bound in csrc/bind_shapes.cpp), so every Python
    # caller reads them from here.
    ("shapes", ("pydl._C", "pydl._cuda", "pydl._cuda_emu", "pydl._extensions")),
    # Picks a device's kernel module, allocates outputs, times calls; the device
    # settings and the random generator.
    ("dispatch", ("pydl._device", "pydl._kernels", "pydl._cuda_kernels", "pydl._runtime",
                  "pydl._random", "pydl.backends", "pydl.cuda", "pydl.profiler")),
    # Function, the graph walk, grad mode and the autocast mode the ops read.
    ("autograd", ("pydl.autograd", "pydl.amp")),
    ("ops", ("pydl.ops",)),
    ("tensor", ("pydl.tensor",)),
    # What a training loop is built from. distributed stands here too: nn's
    # SyncBatchNorm and DistributedDataParallel, and data's DistributedSampler, use it.
    ("library", ("pydl.nn", "pydl.optim", "pydl.data", "pydl.datasets", "pydl.distributed",
                 "pydl.serialization", "pydl.utils")),
    # Built on the library: the Keras API, ONNX export, quantized models.
    ("applications", ("pydl.keras", "pydl.onnx", "pydl.quantization")),
    # The package itself (its __init__ gathers every floor) and the doctest setup.
    ("package", ("pydl", "pydl.conftest")),
)

# Imports inside a function stand only for what is optional: a compiled CUDA module
# or a communication backend that is loaded when asked for.
LAZY_IMPORTS_ALLOWED = {"pydl._cuda", "pydl._cuda_kernels", "pydl.distributed.mpi",
                        "pydl.distributed.nccl"}
# Known circles inside the library floor, each looked up at call time: pydl.distributed
# builds on pydl.nn and pydl.data (DistributedDataParallel is a Module, the package
# re-exports DistributedSampler), while these three reach back into it. Removing
# them needs pydl.distributed's package __init__ to stop importing pydl.data.
KNOWN_LIBRARY_CIRCLES = {("pydl.data", "pydl.distributed"),
                         ("pydl.nn.parallel", "pydl.distributed"),
                         ("pydl.nn.sync_batchnorm", "pydl.distributed.process_group")}


def floor_of(module):
    best = None
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (level, len(prefix))
    return None if best is None else best[0]


def module_files():
    """{module name: path} for every .py file of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_module(name, modules):
    return name in modules or name in ("pydl._C", "pydl._cuda", "pydl._cuda_emu")


def imports_of(name, path, modules):
    """[(imported module, line, outside any function)] for the pydl modules `name` imports.
    `from package import x` counts as importing package.x when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    in_functions = {id(inner) for node in ast.walk(tree)
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                    for inner in ast.walk(node)}
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[:len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}", modules)
                       else base for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == "pydl" or target.startswith("pydl."):
                found.append((target, node.lineno, id(node) not in in_functions))
    return found


def import_graph():
    """(edges, upward, lazy): edges[(from floor, to floor)] = count of module -> module
    imports; upward = [(module, line, imported)] reaching a higher floor; lazy = the
    same for function-local imports of pydl modules not in LAZY_IMPORTS_ALLOWED (nor
    KNOWN_LIBRARY_CIRCLES)."""
    modules = module_files()
    edges, upward, lazy = collections.Counter(), [], []
    for name, path in modules.items():
        here = floor_of(name)
        assert here is not None, f"{name} stands on no floor: add it to FLOORS"
        pairs = {}
        for target, line, top in imports_of(name, path, modules):
            there = floor_of(target)
            assert there is not None, f"{name}:{line} imports {target}, which is on no floor"
            pairs.setdefault(target, (line, there))
            if there > here:
                upward.append((name, line, target))
            if not top and target not in LAZY_IMPORTS_ALLOWED and \
                    (name, target) not in KNOWN_LIBRARY_CIRCLES:
                lazy.append((name, line, target))
        for target, (_, there) in pairs.items():
            if target != name:
                edges[(FLOORS[here][0], FLOORS[there][0])] += 1
    return edges, upward, lazy


def test_no_module_imports_from_a_floor_above_its_own():
    _, upward, _ = import_graph()
    assert not upward, "imports from a higher floor:\n" + "\n".join(
        f"  {module} (line {line}) imports {target} "
        f"[{FLOORS[floor_of(module)][0]} -> {FLOORS[floor_of(target)][0]}]"
        for module, line, target in upward)


def test_no_function_local_import_of_pydl_modules():
    # A function-local import is how a circle hides; only optional modules load late.
    _, _, lazy = import_graph()
    assert not lazy, "function-local imports of pydl modules:\n" + "\n".join(
        f"  {module} (line {line}) imports {target}" for module, line, target in lazy)


def test_every_floor_is_read_from_its_modules():
    # The map itself: floor_of sees a module's package prefix, and the test's parse
    # resolves `from pydl.ops import conv` to the module pydl.ops.conv.
    assert FLOORS[floor_of("pydl.ops.conv")][0] == "ops"
    assert FLOORS[floor_of("pydl.nn.utils.prune")][0] == "library"
    assert FLOORS[floor_of("pydl")][0] == "package"
    modules = module_files()
    targets = {t for t, _, _ in imports_of("pydl.tensor", modules["pydl.tensor"], modules)}
    assert "pydl.ops.elementwise" in targets and "pydl.autograd" in targets


def main():
    edges, upward, lazy = import_graph()
    names = [name for name, _ in FLOORS]
    print("module -> module imports, by floor (rows import from columns):")
    width = max(map(len, names))
    print(" " * (width + 2) + " ".join(f"{n[:8]:>8}" for n in names))
    for a in names:
        print(f"{a:>{width}}  " + " ".join(f"{edges.get((a, b), 0) or '.':>8}" for b in names))
    print(f"total {sum(edges.values())}; upward imports: {len(upward)}")
    for module, line, target in upward:
        print(f"  {module}:{line} -> {target}")
    print(f"function-local imports of pydl modules (not optional ones, not the "
          f"{len(KNOWN_LIBRARY_CIRCLES)} known library circles): {len(lazy)}")
    for module, line, target in lazy:
        print(f"  {module}:{line} -> {target}")


if __name__ == "__main__":
    sys.exit(main())
