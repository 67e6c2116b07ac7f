from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import RunningStack, start_stack, wait_gone


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One `bessmon up` (fresh broker, Redis, simulator, connector, flows, API) shared by the
    whole-stack tests."""
    running = start_stack(Path(tmp_path_factory.mktemp("stack")))
    pids = [int(p) for p in running.state()["children"].values()]  # type: ignore[attr-defined]
    yield running
    assert running.stop() == 0
    assert wait_gone(pids) == []
