"""DVC contract: each stage of dvc.yaml declares the code and the params its notebook really uses (issue 17).

Everything is read statically with `ast`, so the test runs in a second and imports no stage code:

- deps: the transitive closure of `avatarv` modules that a stage's notebook (its code cells) and its `python -m
  avatarv.…` commands import, following every import inside src/avatarv (module-level, function-local, relative;
  a package `__init__` counts when it holds code) and every `[…, "-m", "avatarv.…"]` child process it starts. Each module of the closure must lie under a declared
  src/avatarv dep (a file or a folder), and each declared src/avatarv dep must hold at least one module of it.
- params: the functions and classes reachable from the notebook (a name-reference graph over the closure: a
  definition counts once code that runs names it), scanned for reads of the typed `Config` (config.py): attribute
  chains on a `Config` value (`cfg.eval.benchmark_clips`) and on local aliases of a section (`st = cfg.train.sft;
  st.steps`). A chain that ends on a section (`transformer_from_config(cfg.dit)`) reads the whole section. Each
  read must be covered by a declared param (the key itself or a section above it), each declared param must
  cover at least one read, and the whole `Config` may only be handed on to functions this scan follows.
- profiles: every stage that loads the config declares `profiles.${profile}`, so an edit of the selected
  profile's overrides makes it stale (the top level alone would miss `profiles.small.dit.hidden`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import json
import re
import typing
from pathlib import Path

import pytest
import yaml

from avatarv import config as config_module
from avatarv.paths import ROOT

SRC = ROOT / "src"
PKG = SRC / "avatarv"
PROFILE_PARAM = "profiles.${profile}"
# Modules every stage imports that cannot change a stage's outputs; not required in deps (declaring them is fine),
# and not followed further (their own imports are theirs). config.py is NOT here: its defaults shape outputs.
EXEMPT = {
    "avatarv": "the package __init__: the docstring and __version__ only",
    "avatarv.paths": "where files live; the outputs themselves are declared in dvc.yaml",
    "avatarv.errors": "exception classes",
    "avatarv.tracking": "MLflow logging of params/metrics/artifacts, read by nothing downstream",
}
CONFIG_CLASS = "Config"


# --------------------------------------------------------------------------------------------- the source index
@dataclasses.dataclass
class Module:
    name: str
    path: Path | None  # None for a notebook
    tree: ast.Module
    is_package: bool = False
    defs: dict[str, ast.AST] = dataclasses.field(default_factory=dict)  # top-level functions and classes
    # name -> targets bound by any import in the file (module-level or local): ("mod", m) or ("attr", m, name)
    binds: dict[str, set[tuple]] = dataclasses.field(default_factory=dict)
    imports: set[str] = dataclasses.field(default_factory=set)  # avatarv modules it imports anywhere


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def _modules_unchecked() -> dict[str, Module]:
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        name = _module_name(path)
        mods[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package=path.name == "__init__.py")
    return mods


@functools.cache
def _modules() -> dict[str, Module]:
    """Every module of src/avatarv, parsed and indexed."""
    mods = _modules_unchecked()
    for m in mods.values():
        _index(m)
    return mods


def _resolve_from(m: Module, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = m.name.split(".")
    if not m.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _node_imports(m: Module, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The avatarv modules one import statement runs (a dotted import runs its packages too)."""
    mods, out = _modules_unchecked(), set()
    if isinstance(node, ast.Import):
        for a in node.names:
            out.update(p for p in _parents(a.name) if p in mods)
        return out
    src = _resolve_from(m, node)
    if src:
        out.update(p for p in _parents(src) if p in mods)
        out.update(f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in mods)  # `from pkg import submodule`
    return out


def _subprocess_modules(node: ast.AST) -> set[str]:
    """`[sys.executable, "-m", "avatarv.curate.worker"]`: a module the code runs in a child process."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return set()
    vals = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
    return {b for a, b in itertools.pairwise(vals) if a == "-m" and b in _modules_unchecked()}


def _index(m: Module) -> None:
    for node in m.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            m.defs[node.name] = node
    for node in ast.walk(m.tree):
        m.imports |= _subprocess_modules(node)
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        m.imports |= _node_imports(m, node)
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "avatarv":
                    m.binds.setdefault(a.asname or "avatarv", set()).add(("mod", a.name if a.asname else "avatarv"))
        elif (src := _resolve_from(m, node)) and src.split(".")[0] == "avatarv":
            for a in node.names:
                m.binds.setdefault(a.asname or a.name, set()).add(("attr", src, a.name))


def _has_code(m: Module) -> bool:
    body = m.tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return any(not isinstance(n, (ast.ImportFrom,)) or n.module != "__future__" for n in body)


# --------------------------------------------------------------------------------------------- dvc.yaml stages
@functools.cache
def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _notebook(stage: dict) -> Path:
    found = re.search(r"papermill\s+(\S+\.ipynb)", stage["cmd"])
    assert found, f"dvc.yaml: {stage['cmd']!r} runs no notebook"
    return ROOT / found.group(1)


def _notebook_module(stage_name: str) -> Module:
    cells = json.loads(_notebook(_stages()[stage_name]).read_text())["cells"]
    code = []
    for c in cells:
        if c["cell_type"] == "code":
            src = "".join(c["source"])
            code.append("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))
    m = Module(f"<{stage_name}>", None, ast.parse("\n".join(code)))
    _modules()
    _index(m)
    return m


def _cmd_modules(stage: dict) -> set[str]:
    return {n for n in re.findall(r"python\s+-m\s+(avatarv[\w.]*)", stage["cmd"]) if n not in EXEMPT}


def _src_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("src/avatarv")]


def _params(stage: dict) -> set[str]:
    out = set()
    for p in stage.get("params", []):
        assert isinstance(p, str), f"params from other files are not checked: {p!r}"
        out.add(p)
    return out


# --------------------------------------------------------------------------------------------- (a) module closure
def closure(stage_name: str) -> set[str]:
    """Every avatarv module the stage's notebook and command import, transitively."""
    mods = _modules()
    todo = set(_notebook_module(stage_name).imports) | _cmd_modules(_stages()[stage_name])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in EXEMPT:
            todo |= mods[name].imports
    return {n for n in seen if not mods[n].is_package or _has_code(mods[n])}


def _rel(name: str) -> str:
    return _modules()[name].path.relative_to(ROOT).as_posix()


def _covers(dep: str, file: str) -> bool:
    return file == dep or file.startswith(dep.rstrip("/") + "/")


# --------------------------------------------------------------------------------------------- (b) config reads
def _schema(cls: type) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}


def _walk_chain(root_cls: type, prefix: tuple[str, ...], attrs: list[str]) -> tuple[tuple[str, ...], type | None]:
    """Follow attribute names through the config dataclasses; stop at a leaf or at a non-field attribute."""
    path, cls = prefix, root_cls
    for a in attrs:
        hints = _schema(cls)
        if a not in hints:
            break
        path, cls = path + (a,), hints[a]
        if not dataclasses.is_dataclass(cls):
            return path, None
    return path, cls if dataclasses.is_dataclass(cls) else None


def _section_class(path: tuple[str, ...]) -> type:
    cls = config_module.Config
    for a in path:
        cls = _schema(cls)[a]
    return cls


def _chain(node: ast.AST) -> tuple[str | None, list[str]]:
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id if isinstance(node, ast.Name) else None), attrs[::-1]


def _is_config_annotation(ann: ast.AST | None) -> bool:
    if ann is None:
        return False
    text = ast.unparse(ann).replace('"', "").replace("'", "")
    return CONFIG_CLASS in re.split(r"[\s|\[\],]+", text)


def _root_params(fn: ast.AST) -> set[str]:
    """Parameters that hold the whole Config: annotated `Config`, or an unannotated `cfg`."""
    out = set()
    for f in ast.walk(fn):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = f.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if _is_config_annotation(arg.annotation) or (arg.arg == "cfg" and arg.annotation is None):
                    out.add(arg.arg)
    return out


def _is_load_config(value: ast.AST) -> bool:
    """`load_config(...)` or `config.load_config(...)` anywhere in the expression."""
    for n in ast.walk(value):
        if isinstance(n, ast.Call):
            base, attrs = _chain(n.func)
            if (attrs or [base])[-1] == "load_config":
                return True
    return False


@dataclasses.dataclass
class Reads:
    keys: set[str] = dataclasses.field(default_factory=set)
    handed_on: list[str] = dataclasses.field(default_factory=list)  # whole-Config uses the scan cannot follow


def _scan_config(code: ast.AST, mod: Module, reads: Reads, resolve) -> None:
    """Config reads in one reachable definition (or a module's / notebook's top level)."""
    roots = _root_params(code) if not isinstance(code, ast.Module) else set()
    aliases: dict[str, tuple[str, ...]] = {}  # local name -> the section it holds (`st = cfg.train.sft`)
    alias_values: set[ast.AST] = set()  # their right-hand sides: naming a section is no read of it
    for n in ast.walk(code):
        if isinstance(n, ast.Assign) and _is_load_config(n.value):
            roots |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    for _ in range(2):  # aliases of aliases
        for n in ast.walk(code):
            if isinstance(n, ast.Assign):
                pairs = [(t, n.value) for t in n.targets]
                if len(n.targets) == 1 and isinstance(n.targets[0], ast.Tuple) and isinstance(n.value, ast.Tuple):
                    pairs = list(zip(n.targets[0].elts, n.value.elts))
                for t, v in pairs:
                    base, attrs = _chain(v)
                    if isinstance(t, ast.Name) and attrs and (base in roots or base in aliases):
                        prefix = aliases.get(base, ())
                        path, cls = _walk_chain(_section_class(prefix), prefix, attrs)
                        if cls is not None and path:
                            aliases[t.id] = path
                            alias_values.add(v)
    parents = {child: p for p in ast.walk(code) for child in ast.iter_child_nodes(p)}
    for n in ast.walk(code):
        if not isinstance(n, (ast.Attribute, ast.Name)) or isinstance(parents.get(n), ast.Attribute):
            continue
        base, attrs = _chain(n)
        if (base not in roots and base not in aliases) or n in alias_values:
            continue
        if not isinstance(n.ctx, ast.Load):  # assignment targets
            continue
        prefix = aliases.get(base, ())
        path, _ = _walk_chain(_section_class(prefix), prefix, attrs)
        if path:
            reads.keys.add(".".join(path))
        elif base in roots:
            _handed_on(n, parents, mod, reads, resolve)


def _handed_on(n: ast.AST, parents: dict, mod: Module, reads: Reads, resolve) -> None:
    """A bare Config value: fine as an argument to a followed function's root parameter (or an exempt module)."""
    call = parents.get(n)
    if isinstance(call, ast.keyword):
        call = parents.get(call)
    where = f"{mod.name}:{n.lineno}"
    if not isinstance(call, ast.Call) or n is call.func:
        if not (isinstance(call, (ast.Return, ast.Expr)) or isinstance(parents.get(n), ast.Compare)):
            reads.handed_on.append(f"{where} {ast.unparse(parents.get(n, n))[:80]}")
        return
    args = list(call.args)
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in SUBMIT and args:  # pool.submit(fn, *args)
        func, args = args[0], args[1:]
    targets = resolve(mod, func)
    if any(t[0] in EXEMPT for t in targets):
        return
    fns = _callees(mod, func, targets, resolve)
    if not fns:
        reads.handed_on.append(f"{where} {ast.unparse(call)[:80]} (callee not followed)")
        return
    kw = next((k.arg for k in call.keywords if k.value is n), None)
    idx = next((i for i, x in enumerate(args) if x is n), None)
    names = []
    for fn, bound in fns:
        params = [*fn.args.posonlyargs, *fn.args.args][1 if bound else 0:]
        name = kw if kw is not None else (params[idx].arg if idx is not None and idx < len(params) else None)
        if name in _root_params(fn):
            return
        names.append(f"{fn.name}({name})")
    reads.handed_on.append(f"{where} {ast.unparse(call)[:80]} (received as {', '.join(names)}: neither `cfg` nor "
                           "annotated Config)")


SUBMIT = ("submit",)  # executor.submit(fn, *args) calls fn(*args)


def _method(cls: ast.ClassDef, name: str) -> tuple[ast.FunctionDef, bool] | None:
    for b in cls.body:
        if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) and b.name == name:
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in b.decorator_list)
            return b, not static
    return None


def _callees(mod: Module, func: ast.AST, targets, resolve) -> list[tuple[ast.AST, bool]]:
    """The function definitions a call may run, each with whether its first parameter is bound (self / cls)."""
    mods = _modules()
    out = []
    for tmod, tname in targets:
        if tname is None:
            continue
        d = mods[tmod].defs[tname]
        if isinstance(d, ast.ClassDef):
            if isinstance(func, ast.Attribute) and (tmod, tname) in resolve(mod, func.value):
                meth = _method(d, func.attr)  # Class.method(...)
            else:
                meth = _method(d, "__init__")  # Class(...)
            if meth:
                out.append(meth)
        else:
            out.append((d, False))
    if not out and isinstance(func, ast.Attribute):  # obj.method(...): that method of any class in the package
        for m in mods.values():
            for d in m.defs.values():
                if isinstance(d, ast.ClassDef) and (meth := _method(d, func.attr)):
                    out.append(meth)
    return out


def _resolver():
    mods = _modules()

    @functools.cache
    def target(modname: str, name: str, depth: int = 0) -> frozenset[tuple[str, str | None]]:
        """(module, definition) pairs a name of a module stands for; definition None = the module itself."""
        if modname not in mods or depth > 8:
            return frozenset()
        m = mods[modname]
        if name in m.defs:
            return frozenset({(modname, name)})
        if f"{modname}.{name}" in mods:
            return frozenset({(f"{modname}.{name}", None)})
        out = set()
        for b in m.binds.get(name, ()):
            out |= bind_target(b, depth + 1)
        return frozenset(out)

    def bind_target(b: tuple, depth: int = 0) -> set:
        if b[0] == "mod":
            return {(b[1], None)} if b[1] in mods else set()
        return set(target(b[1], b[2], depth))

    def resolve(mod: Module, expr: ast.AST) -> set[tuple[str, str | None]]:
        base, attrs = _chain(expr)
        if base is None:
            return set()
        if base in mod.defs and mod.path is not None:
            cur = {(mod.name, base)}
        else:
            cur = set()
            for b in mod.binds.get(base, ()):
                cur |= bind_target(b)
        for a in attrs:  # module.attr chains (classes' attributes stay on the class)
            nxt = set()
            for tmod, tname in cur:
                if tname is None:
                    nxt |= target(tmod, a)
                else:
                    nxt.add((tmod, tname))
            cur = nxt
        return cur

    return resolve


def config_reads(stage_name: str) -> Reads:
    """Config keys read by the code reachable from the stage's notebook."""
    mods, resolve = _modules(), _resolver()
    nb = _notebook_module(stage_name)
    reads = Reads()
    done: set[tuple[str, str | None]] = set()
    todo: list[tuple[Module, ast.AST]] = [(nb, nb.tree)]
    todo += [(mods[m], mods[m].tree) for m in _cmd_modules(_stages()[stage_name])]
    done |= {(m, None) for m in _cmd_modules(_stages()[stage_name])}

    def reach(mod: Module, code: ast.AST) -> None:
        for n in ast.walk(code):
            if isinstance(n, (ast.Name, ast.Attribute)) and isinstance(n.ctx, ast.Load):
                for t in resolve(mod, n):
                    add(t)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):  # an import that runs runs the module's top level
                for name in _node_imports(mod, n):
                    add((name, None))
            for name in _subprocess_modules(n):
                add((name, None))

    def add(t: tuple[str, str | None]) -> None:
        if t[0] in EXEMPT:
            return
        if (t[0], None) not in done:  # the module's own top level runs on import
            done.add((t[0], None))
            top = ast.Module([s for s in mods[t[0]].tree.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
                             + [d for s in mods[t[0]].tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                for d in (*s.decorator_list, *getattr(getattr(s, "args", None), "defaults", []))], [])
            todo.append((mods[t[0]], top))
        if t[1] is not None and t not in done:
            done.add(t)
            todo.append((mods[t[0]], mods[t[0]].defs[t[1]]))

    while todo:
        mod, code = todo.pop()
        reach(mod, code)
        _scan_config(code, mod, reads, resolve)
    return reads


def _covered(read: str, declared: set[str]) -> bool:
    return any(read == p or read.startswith(p + ".") for p in declared)


def _uses(param: str, reads: set[str]) -> bool:
    return any(r == param or r.startswith(param + ".") for r in reads)


# --------------------------------------------------------------------------------------------- the tests
STAGES = sorted(_stages())


@pytest.mark.parametrize("stage", STAGES)
def test_src_deps_cover_exactly_the_imported_modules(stage):
    files = {_rel(n): n for n in closure(stage)}
    deps = _src_deps(_stages()[stage])
    missing = sorted(f for f, n in files.items() if n not in EXEMPT and not any(_covers(d, f) for d in deps))
    unused = sorted(d for d in deps if not any(_covers(d, f) for f in files))
    gone = sorted(d for d in deps if not (ROOT / d).exists())
    assert not missing, f"dvc.yaml {stage}: deps miss modules its notebook imports: {missing}"
    assert not unused, f"dvc.yaml {stage}: deps hold no module its notebook imports: {unused}"
    assert not gone, f"dvc.yaml {stage}: deps that do not exist: {gone}"


@functools.cache
def _stage_reads(stage: str) -> Reads:
    return config_reads(stage)


@pytest.mark.parametrize("stage", STAGES)
def test_params_are_exactly_the_keys_read(stage):
    reads = _stage_reads(stage)
    assert not reads.handed_on, f"{stage}: the whole Config goes where this test cannot follow it: {reads.handed_on}"
    keys = reads.keys | {"profile"}  # the notebook's papermill parameter
    declared = _params(_stages()[stage]) - {PROFILE_PARAM}
    undeclared = sorted(k for k in keys if not _covered(k, declared))
    unread = sorted(p for p in declared if not _uses(p, keys))
    assert not undeclared, f"dvc.yaml {stage}: params read but not declared: {undeclared}"
    assert not unread, f"dvc.yaml {stage}: params declared but never read: {unread}"


@pytest.mark.parametrize("stage", STAGES)
def test_profile_overrides_make_stages_stale(stage):
    """A stage that reads config keys tracks the selected profile's overrides (`profiles.${profile}`): declaring
    only the top level would miss an edit of `profiles.small.dit.hidden` in a `-S profile=small` run. A stage
    that reads none does not declare it."""
    reads_keys = bool(_stage_reads(stage).keys)
    declared = PROFILE_PARAM in _params(_stages()[stage])
    assert declared == reads_keys, (f"dvc.yaml {stage}: " + ("declare" if reads_keys else "drop") +
                                    f" {PROFILE_PARAM!r} in params (it reads {len(_stage_reads(stage).keys)} config keys)")


def test_every_profile_has_an_entry_for_dvc():
    """DVC resolves `profiles.${profile}` for the selected profile, so each one needs an entry (tiny: empty)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(raw["profiles"]) == set(config_module.PROFILES)
    assert not raw["profiles"]["tiny"], "profiles.tiny stays empty: the tiny profile is the top level"


# --------------------------------------------------------------------------------------------- the checker itself
def test_the_scan_follows_aliases_sections_and_hand_offs(tmp_path):
    mod = Module("<probe>", None, ast.parse(
        "def f(cfg: Config, x):\n"
        "    st = cfg.train.sft\n"
        "    d, e = cfg.dit, cfg.eval\n"
        "    g(st.steps, d, e.benchmark_clips, cfg.seed, st.losses['sync'])\n"
        "    return h(cfg)\n"))
    reads = Reads()
    _scan_config(mod.tree.body[0], mod, reads, lambda m, e: set())
    assert reads.keys == {"train.sft.steps", "dit", "eval.benchmark_clips", "seed", "train.sft.losses"}
    assert len(reads.handed_on) == 1 and "h(cfg)" in reads.handed_on[0]
