"""The two cores offer the same surface: names, and the signature of every callable.

``ocistore._core_py.__all__`` is the contract. For each name the native core
must export an object of the same kind (function, class, value); a function or
method must take the same parameters (names, kinds, defaults), a class must
have the same public methods, classmethods, properties and attributes. The
few differences that are by design are listed in :data:`BY_DESIGN` with the
reason (docs/design.md §4); anything else fails here.

Native constructors are slot wrappers without an introspectable signature:
the build embeds it as the first line of ``__init__``'s docstring
(setup.py's ``embedsignature``), which this test parses, and compares with
the ``.pyi`` stubs too (``mypy.stubtest`` cannot see a slot's parameters).
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, WrapperDescriptorType
from typing import Any

import pytest

from ocistore import _core

pytestmark = pytest.mark.one_core  # compares both cores itself

Shape = tuple[tuple[str, str, str], ...]
"""A signature as compared: (name, kind, default as `_default` spells it) per parameter."""

BY_DESIGN: dict[str, str] = {
    "HASH_STATES": "a value, not a signature: True on the native core (it restores a "
    "hash state), False on the pure one (hashlib cannot import one)",
    "StatCacheScope.__init__": "made by StatCache.scope(): the pure constructor takes the "
    "cache's internals, the native one refuses to be called",
    "LinkCacheScope.__init__": "made by StatCache.links(), as StatCacheScope",
    "WriteBehind.__init__": "the native class takes (fd, writeback) in __cinit__, which has "
    "no introspectable signature; tests/test_writebehind_core.py calls both alike",
}
"""Differences the comparison accepts, each with its reason."""

PUBLIC_DUNDERS = frozenset({"__init__", "__len__", "__iter__", "__contains__", "__call__"})


def _cores() -> tuple[ModuleType, ModuleType]:
    pure = _core.load("pure")
    try:
        native = _core.load("native")
    except ImportError:
        if _core.REQUIRE_EXTENSIONS:
            raise
        pytest.skip("native core not built")
    return pure, native


def _embedded(init: Any, owner: type) -> inspect.Signature | None:
    """A native constructor's signature from the first line of its docstring, if embedded."""
    doc = getattr(init, "__doc__", None) or ""
    first = doc.split("\n", 1)[0]
    if not first.startswith("__init__("):
        return None
    fn = ast.parse(f"def {first}: pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    return _from_ast(fn, vars(sys.modules[owner.__module__]))


def _from_ast(fn: ast.FunctionDef, namespace: dict[str, Any]) -> inspect.Signature:
    """The signature a ``def`` spells; defaults evaluated in ``namespace`` (``...`` stays)."""

    def value(node: ast.expr) -> Any:
        try:
            return ast.literal_eval(node)
        except ValueError:
            return eval(compile(ast.Expression(node), "<signature>", "eval"), namespace)

    a = fn.args
    params: list[inspect.Parameter] = []
    positional = [*a.posonlyargs, *a.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + [
        value(d) for d in a.defaults
    ]
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if i < len(a.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        params.append(inspect.Parameter(arg.arg, kind, default=default))
    if a.vararg is not None:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, kw in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        default = inspect.Parameter.empty if kw is None else value(kw)
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, default=default))
    if a.kwarg is not None:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _stub_constructors(module: ModuleType) -> dict[str, inspect.Signature]:
    """``__init__`` of each class of ``module``'s ``.pyi`` stub, as the stub spells it."""
    stub = Path(module.__file__ or "").parent / (module.__name__.rpartition(".")[2] + ".pyi")
    out = {}
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    out[node.name] = _from_ast(item, {})
    return out


def _signature(obj: Any, owner: type | None = None) -> inspect.Signature | None:
    """What a caller of ``obj`` sees; None when nothing is introspectable."""
    if isinstance(obj, WrapperDescriptorType) and obj.__name__ == "__init__":
        return None if owner is None else _embedded(obj, owner)
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _default(value: Any) -> str:
    """A default as compared: a function or class by name (each core has its own object)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{value.__qualname__}>"
    return repr(value)


def _shape(sig: inspect.Signature | None) -> Shape | None:
    """Parameter names, kinds and defaults; a leading-underscore parameter is a core's own."""
    if sig is None:
        return None
    return tuple(
        (p.name, p.kind.name, _default(p.default))
        for p in sig.parameters.values()
        if not p.name.startswith("_")
    )


def _kind(cls: type, name: str) -> str:
    """How ``name`` is reached on ``cls``: method, classmethod, staticmethod or data."""
    raw = inspect.getattr_static(cls, name, None)
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if raw is None or isinstance(raw, (property, str, int, bytes, tuple, frozenset)):
        return "data"  # an instance attribute (not on the class), a property, a constant
    if inspect.isdatadescriptor(raw):
        return "data"  # a slot or a Cython attribute
    return "method" if callable(raw) else "data"


def _members(cls: type, specimen: object | None) -> set[str]:
    names = {n for n in dir(cls) if not n.startswith("_") or n in PUBLIC_DUNDERS}
    if specimen is not None:  # instance attributes of a pure class are not on the class
        names |= {n for n in dir(specimen) if not n.startswith("_")}
    return names


def _method_shape(cls: type, name: str) -> Shape | None:
    """A method's parameters after ``self`` (a C slot makes it positional-only)."""
    kind = _kind(cls, name)
    if kind == "method":
        shape = _shape(_signature(inspect.getattr_static(cls, name), cls))
        return None if shape is None else shape[1:]
    return _shape(_signature(getattr(cls, name)))  # bound: no cls


@pytest.fixture
def specimens(tmp_path: Path) -> Iterator[Callable[[ModuleType], dict[str, object]]]:
    """One instance of each class a core exports (instance attributes count as surface)."""
    made: list[Callable[[], None]] = []

    def make(core: ModuleType) -> dict[str, object]:
        out: dict[str, object] = {}
        base = tmp_path / core.__name__
        base.mkdir()
        if hasattr(core, "StatCache"):
            cache = core.StatCache(base, "/{algorithm}/{encoded:.2}/{encoded}/data")
            made.append(cache.close)
            out["StatCache"] = cache
            out["StatCacheScope"] = cache.scope(object())
            out["LinkCacheScope"] = cache.links(str)
        if hasattr(core, "SharedCounter"):
            counter = core.SharedCounter(base / "counter")
            made.append(counter.close)
            out["SharedCounter"] = counter
        for name in ("Sha256", "Sha512"):
            if hasattr(core, name):
                out[name] = getattr(core, name)()
        if hasattr(core, "WriteBehind"):
            fd = os.open(base / "wb", os.O_WRONLY | os.O_CREAT, 0o644)
            writer = core.WriteBehind(fd, False)
            made.append(lambda: os.close(fd))
            made.append(writer.close)
            out["WriteBehind"] = writer
        return out

    yield make
    for undo in reversed(made):
        undo()


def _classes(pure: ModuleType, native: ModuleType) -> Iterator[tuple[str, type, type]]:
    """Every class of the contract, and the classes its methods hand out (scopes)."""
    for name in pure.__all__:
        p = getattr(pure, name)
        if inspect.isclass(p):
            yield name, p, getattr(native, name)
    if hasattr(pure, "StatCache"):
        p_links = sys.modules[pure.StatCache.__module__].LinkCacheScope
        n_links = sys.modules[native.StatCache.__module__].LinkCacheScope
        yield "LinkCacheScope", p_links, n_links


def test_cores_export_the_same_names() -> None:
    pure, native = _cores()
    assert sorted(pure.__all__) == sorted(native.__all__)
    missing = [n for n in pure.__all__ if not hasattr(native, n)]
    assert missing == []


def test_exports_are_of_the_same_kind() -> None:
    pure, native = _cores()

    def kind(obj: object) -> str:
        if inspect.isclass(obj):
            return "class"
        return "callable" if callable(obj) else type(obj).__name__

    assert {n: kind(getattr(native, n)) for n in pure.__all__} == {
        n: kind(getattr(pure, n)) for n in pure.__all__
    }


def test_functions_take_the_same_parameters() -> None:
    pure, native = _cores()
    differ: dict[str, tuple[Shape | None, Shape | None]] = {}
    checked = 0
    for name in pure.__all__:
        p = getattr(pure, name)
        if inspect.isclass(p) or not callable(p):
            continue
        expected, got = _shape(_signature(p)), _shape(_signature(getattr(native, name)))
        assert expected is not None, f"pure {name} has no signature"
        if got != expected:
            differ[name] = (expected, got)
        checked += 1
    assert differ == {}, "(pure, native) parameters differ"
    assert checked > 0


def test_classes_have_the_same_members(
    specimens: Callable[[ModuleType], dict[str, object]],
) -> None:
    pure, native = _cores()
    p_made, n_made = specimens(pure), specimens(native)
    for name, p, n in _classes(pure, native):
        p_members = _members(p, p_made.get(name))
        n_members = _members(n, n_made.get(name))
        assert sorted(n_members) == sorted(p_members), name
        assert {m: _kind(n, m) for m in n_members} == {m: _kind(p, m) for m in p_members}, name


def test_methods_take_the_same_parameters(
    specimens: Callable[[ModuleType], dict[str, object]],
) -> None:
    pure, native = _cores()
    p_made = specimens(pure)
    differ: dict[str, tuple[Shape | None, Shape | None]] = {}
    checked = 0
    for name, p, n in _classes(pure, native):
        for member in sorted(_members(p, p_made.get(name))):
            if _kind(p, member) not in ("method", "classmethod", "staticmethod"):
                continue
            where = f"{name}.{member}"
            if where in BY_DESIGN:
                continue
            expected, got = _method_shape(p, member), _method_shape(n, member)
            assert expected is not None, f"pure {where} has no signature"
            if got != expected:  # None: not introspectable on the native core
                differ[where] = (expected, got)
            checked += 1
    assert differ == {}, "(pure, native) parameters differ"
    assert checked > 0


def test_native_stubs_spell_the_constructors() -> None:
    """What stubtest cannot see: a native ``__init__`` (a slot) against the stub's.

    A stub may write ``...`` for a default; then only that there is one counts.
    """
    _, native = _cores()
    checked = 0
    names = {getattr(getattr(native, n), "__module__", None) for n in native.__all__}
    modules = {sys.modules[m] for m in names if m is not None}
    for module in sorted(modules, key=lambda m: m.__name__):
        stubs = _stub_constructors(module)
        for name, cls in sorted(vars(module).items()):
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            runtime = _embedded(cls.__init__, cls)
            if runtime is None:
                continue
            where = f"{module.__name__}.{name}"
            assert name in stubs, f"{where}: the stub has no __init__"
            stub = stubs[name]
            assert [(p.name, p.kind) for p in stub.parameters.values()] == [
                (p.name, p.kind) for p in runtime.parameters.values()
            ], where
            for p, r in zip(stub.parameters.values(), runtime.parameters.values(), strict=True):
                if p.default is not Ellipsis:
                    assert _default(p.default) == _default(r.default), f"{where}({p.name})"
                else:
                    assert r.default is not inspect.Parameter.empty, f"{where}({p.name})"
            checked += 1
    assert checked > 0


def test_every_accepted_difference_is_still_one() -> None:
    """An entry of BY_DESIGN that no longer differs (or no longer exists) must go."""
    pure, native = _cores()
    classes = {name: (p, n) for name, p, n in _classes(pure, native)}
    for where in BY_DESIGN:
        if "." not in where:
            assert where in pure.__all__, where
            assert getattr(pure, where) != getattr(native, where), where
            continue
        cls, member = where.split(".")
        assert cls in classes, where
        p, n = classes[cls]
        assert _method_shape(n, member) != _method_shape(p, member), where
