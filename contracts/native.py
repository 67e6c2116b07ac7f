"""The contract engine's hot modules compiled to C with mypyc, used only while they are exactly
the source beside them.

`make up` and `make test` build them (`python -m infra.native`) into `.build/native/contracts/`
with a manifest of the SHA-256 of every source compiled. On import, `contracts` puts that
folder first on its search path only when each of those sources still has the digest
compiled — an edited module, a build for another Python, or `BESSMON_NATIVE=0` runs the
Python source instead, which gives the same results (tests/contracts/test_native.py). Compiled
or not, nothing changes but speed.

What the compiled classes need from their source: `@mypyc_attr(serializable=True,
allow_interpreted_subclasses=True)` so that pickle and copy can create them without
`__init__`, and `__getstate__` / `__setstate__` from this module, so that a recovery snapshot
written by either form loads in the other: the state is a dict of attributes by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

# The modules compiled, in the order mypyc is given them (infra/native.py).
MODULES = ("intervals", "rules", "ledger", "incremental")
HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / ".build" / "native" / "contracts"
MANIFEST = BUILD / "manifest.json"


def digests() -> dict[str, str]:
    """The SHA-256 of each module's source now."""
    return {name: hashlib.sha256((HERE / f"{name}.py").read_bytes()).hexdigest()
            for name in MODULES}


def why_not_compiled() -> str | None:
    """None when the compiled modules match their sources; else why the source runs."""
    if os.environ.get("BESSMON_NATIVE", "1") == "0":
        return "BESSMON_NATIVE=0"
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return "not built (make native)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest {MANIFEST}: {exc}"
    try:
        now = digests()
    except OSError as exc:
        return f"source unreadable: {exc}"
    if manifest.get("sources") != now:
        return "built from other sources (make native)"
    if manifest.get("python") != sys.version:
        return f"built for Python {manifest.get('python')} (make native)"
    return None


def search_path(path: list[str]) -> list[str]:
    """The package's search path: the compiled modules first when they are current."""
    return path if why_not_compiled() is not None else [str(BUILD), *path]


def is_compiled(module: object) -> bool:
    """Whether a module was loaded from the compiled build."""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def state_of(obj: object) -> dict[str, Any]:
    """An object's attributes by name, whatever it runs as (attributes never set left out)."""
    names = getattr(type(obj), "__mypyc_attrs__", None)
    if names is None:
        attributes = getattr(obj, "__dict__", None)
        if attributes is not None:
            return dict(attributes)
        names = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
    state = {}
    for name in names:
        try:
            state[name] = getattr(obj, name)
        except AttributeError:
            continue
    return state


def restore(obj: object, state: object) -> dict[str, Any]:
    """Set what `state_of` gave (or, from a snapshot of an older slotted dataclass, its list
    of field values) on `obj`, frozen or not; returns it as a dict."""
    if not isinstance(state, dict):
        names = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
        state = dict(zip(names, state, strict=True))  # type: ignore[call-overload]
    for name, value in state.items():
        try:
            object.__setattr__(obj, name, value)
        except AttributeError:
            # One an older version had and this one dropped, which a compiled or slotted
            # class cannot hold: left out (in a class with a __dict__ it sits unused).
            continue
    return state
