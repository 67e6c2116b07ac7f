"""The compiled contract engine (contracts/native.py, built by `make native`): used when it
matches its sources, else the Python source runs — and the two forms give the same numbers
and load each other's recovery snapshots."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts import native

ROOT = Path(__file__).resolve().parents[2]


def test_the_compiled_modules_are_used_when_they_match_their_sources() -> None:
    """`make test` builds them first (`make native`); a run of pytest after editing one of
    them fails here until it is built again. (BESSMON_NATIVE=0 runs the tests on the
    Python source on purpose.)"""
    if os.environ.get("BESSMON_NATIVE") == "0":
        pytest.skip("BESSMON_NATIVE=0: the tests run on the Python source, as asked")
    why = native.why_not_compiled()
    assert why is None, f"the compiled contract engine is not used: {why}"
    for name in native.MODULES:
        module = importlib.import_module(f"contracts.{name}")
        assert native.is_compiled(module), module.__file__
        # (mypyc names a module's file after the shared library's folder, not the shim's)
        assert str(module.__file__).startswith(f"{native.BUILD}/"), module.__file__


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "manifest.json"
    monkeypatch.setattr(native, "MANIFEST", path)
    monkeypatch.delenv("BESSMON_NATIVE", raising=False)
    path.write_text(json.dumps({"python": sys.version, "sources": native.digests()}))
    return path


def test_a_build_of_other_sources_or_another_python_is_not_used(
        manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.why_not_compiled() is None
    assert native.search_path(["src"]) == [str(native.BUILD), "src"]

    edited = native.digests()
    edited["ledger"] = "0" * 64
    manifest.write_text(json.dumps({"python": sys.version, "sources": edited}))
    assert native.why_not_compiled() == "built from other sources (make native)"
    assert native.search_path(["src"]) == ["src"]

    manifest.write_text(json.dumps({"python": "3.11.0 (other)", "sources": native.digests()}))
    assert native.why_not_compiled() == "built for Python 3.11.0 (other) (make native)"

    manifest.write_text("{not json")
    assert native.why_not_compiled().startswith(f"unreadable manifest {manifest}")  # type: ignore[union-attr]

    manifest.unlink()
    assert native.why_not_compiled() == "not built (make native)"


def test_bessmon_native_0_runs_the_source(manifest: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BESSMON_NATIVE", "0")
    assert native.why_not_compiled() == "BESSMON_NATIVE=0"
    assert native.search_path(["src"]) == ["src"]


def run(out: Path, *, compiled: bool, snapshot: Path | None = None) -> dict[str, Any]:
    out.mkdir()
    env = {**os.environ, "BESSMON_NATIVE": "1" if compiled else "0"}
    subprocess.run([sys.executable, "-m", "tests.contracts.native_run", str(out),
                    *([str(snapshot)] if snapshot else [])],
                   cwd=ROOT, env=env, check=True, timeout=120)
    result: dict[str, Any] = pickle.loads((out / "result.pkl").read_bytes())
    assert result["compiled"] is compiled
    return result


def test_both_forms_give_the_same_numbers_and_resume_from_each_others_snapshots(
        tmp_path: Path) -> None:
    """Random months of every state, cause and window, shuffled within the lateness; the
    accumulator's days and the periods' availability and LD compared to the last digit."""
    python = run(tmp_path / "python", compiled=False)
    compiled = run(tmp_path / "compiled", compiled=True)
    assert python["periods"] == compiled["periods"]
    assert python["totals"] == compiled["totals"]
    assert len(python["totals"]["u1"]) >= 61  # every day of June and July was booked
    assert all(a is not None and a < 1.0 for _, a, _ in python["periods"])

    from_compiled = run(tmp_path / "python-from-compiled", compiled=False,
                        snapshot=tmp_path / "compiled" / "snapshot.pkl")
    from_python = run(tmp_path / "compiled-from-python", compiled=True,
                      snapshot=tmp_path / "python" / "snapshot.pkl")
    for resumed in (from_compiled, from_python):
        assert resumed["periods"] == python["periods"]
        assert resumed["totals"] == python["totals"]


def test_the_build_command_says_which_form_runs_and_builds_only_when_needed(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import native as build

    monkeypatch.delenv("BESSMON_NATIVE", raising=False)
    built = []
    monkeypatch.setattr(build, "build", lambda: built.append(1))
    compiled = native.why_not_compiled() is None
    assert build.main([]) == (0 if compiled else 1)
    assert built == ([] if compiled else [1])  # current: nothing to build
    monkeypatch.setenv("BESSMON_NATIVE", "0")
    assert build.main([]) == 1  # asked for Python: nothing built either
    assert built == ([] if compiled else [1])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "contract engine: Python (BESSMON_NATIVE=0)")

    monkeypatch.delenv("BESSMON_NATIVE")
    monkeypatch.setattr(native, "why_not_compiled", lambda: "not built (make native)")
    monkeypatch.setenv("CC", "no-such-compiler")
    assert build.main([]) == 1
    assert "no C compiler (no-such-compiler)" in capsys.readouterr().err


def test_an_attribute_an_older_version_had_is_left_out_when_restored() -> None:
    """What `restore` does with a snapshot's attribute the class no longer has: compiled
    classes cannot hold it, so it is dropped; the rest is restored."""
    from contracts.ledger import Totals

    old = Totals(window_us=5, excluded_us=1).__getstate__()
    restored = Totals.__new__(Totals)
    restored.__setstate__({**old, "dropped_since": 1})
    assert restored == Totals(window_us=5, excluded_us=1)
