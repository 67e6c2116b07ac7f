"""Compile the contract engine's hot modules (contracts/native.py: MODULES) with mypyc into
`.build/native/contracts/`, where `contracts` finds them while they match their sources.

    .venv/bin/python -m infra.native [--check] [--force]

It builds only when the build in place does not match the sources (`make up` and `make test`
run it each time). It needs a C compiler and Python's headers; without them it says so and
exits 1, and everything runs as Python (the same results, slower). `--check` only says
whether the build in place is used, and why not."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from contracts import native

GROUP = "contracts.native_hot"  # the shared library's module (one library for all modules)


def build() -> None:
    """Compile into a temporary folder, then swap it in whole (a process importing
    `contracts` meanwhile sees the old build or the new one, never half of one)."""
    from mypyc.build import mypycify  # the build tools only where the build runs
    from setuptools import setup

    sources = native.digests()  # before compiling: an edit meanwhile makes the build stale
    root = native.HERE.parent
    out = native.BUILD.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="native-") as tmp:
        work = Path(tmp)
        cwd = Path.cwd()
        os.chdir(root)  # mypyc names modules after their paths
        try:
            extensions = mypycify([f"contracts/{name}.py" for name in native.MODULES],
                                  opt_level="3", group_name=GROUP,
                                  target_dir=str(work / "c"))
            os.chdir(work)  # not the project's: setup() would read its pyproject.toml
            setup(name="bessmon-native", ext_modules=extensions,
                  script_args=["--quiet", "build_ext", "--build-lib", str(work / "lib"),
                               "--build-temp", str(work / "temp")])
        finally:
            os.chdir(cwd)
        built = work / "lib" / "contracts"
        (built / "manifest.json").write_text(json.dumps(
            {"python": sys.version, "sources": sources}, indent=1) + "\n")
        old = work / "old"
        if out.exists():
            out.rename(old)
        (work / "lib").rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether the compiled modules are used, and why not")
    parser.add_argument("--force", action="store_true", help="build even if current")
    args = parser.parse_args(argv)
    why = native.why_not_compiled()
    if not args.check and (args.force or why is not None) and why != "BESSMON_NATIVE=0":
        compiler = os.environ.get("CC", "cc")
        if shutil.which(compiler) is None:
            print(f"infra.native: no C compiler ({compiler}): the contract engine runs as "
                  "Python", file=sys.stderr)
            return 1
        print(f"compiling contracts/{{{','.join(native.MODULES)}}}.py with mypyc …", flush=True)
        t = time.perf_counter()
        try:
            build()
        except (Exception, SystemExit) as exc:  # setuptools exits on a compiler error
            print(f"infra.native: the build failed: {exc}", file=sys.stderr)
        else:
            print(f"built {native.BUILD} in {time.perf_counter() - t:.0f} s")
        why = native.why_not_compiled()  # (a build that ran meanwhile may have made it)
    print("contract engine: " + ("compiled modules" if why is None else f"Python ({why})"))
    return 0 if why is None else 1


if __name__ == "__main__":
    sys.exit(main())
