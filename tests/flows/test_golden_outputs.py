"""Golden outputs: the telemetry flow on a fixed input set that exercises every rule must
produce exactly what it produced when the golden files were written — every output topic,
the hot state in Redis and the history tables — so that a rewrite of the flow can show that
nothing it produces changed. The input set, the golden files' content, what is normalised
and the tolerance are described in tests/flows/golden_outputs.py.

Runs: the flow in this process with one worker (`bytewax.testing.run_main`), and
`bessmon flows --to-end --processes 2` (two worker processes of one cluster). The second is
compared with the same golden files: sites are spread over the workers, so the order of
messages across keys differs, which the golden files do not freeze anyway (each topic's
messages are grouped by key, in order within each key).

tests/flows/golden/inputs.sha256 pins the input set itself, so that a change of the
simulator or the generator is told apart from a change of the flow.

After an intended change of what the flows produce, regenerate the golden files (and review
their diff, e.g. `zcat tests/flows/golden/topics.json.gz | python -m json.tool`):

    .venv/bin/python -m tests.flows.golden_outputs --write

Run the tests: `.venv/bin/python -m pytest -q tests/flows/test_golden_outputs.py`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.flows.golden_outputs import (
    CONFIG,
    CONTRACTS,
    FLEET,
    INPUTS_DIGEST,
    SITE_SETTINGS,
    canonical,
    coverage,
    first_difference,
    golden_path,
    input_digest,
    input_records,
    read_golden,
    run_golden_inputs,
    ticket_records,
    write_fleet_file,
)
from tests.flows.harness import Record, run_cli_flow

REGENERATE = ".venv/bin/python -m tests.flows.golden_outputs --write"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    missing = [p for p in map(golden_path, ("topics", "redis", "history")) if not p.exists()]
    assert not missing, f"no golden files {missing}: write them with `{REGENERATE}`"
    return read_golden()


@pytest.fixture(scope="module")
def inputs() -> tuple[list[Record], list[Record]]:
    """The telemetry and ticket records of the input set."""
    return input_records(), ticket_records()


@pytest.fixture(scope="module")
def one_worker(kafka_bootstrap: str, redis_url: str, inputs: tuple[list[Record], list[Record]],
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_golden_inputs(kafka_bootstrap, redis_url, 8, tmp_path_factory.mktemp("golden"),
                             *inputs)


def test_the_input_set_covers_every_rule(one_worker: dict[str, Any]) -> None:
    assert coverage(one_worker) == []


@pytest.mark.timeout(120)
def test_one_worker_produces_the_golden_outputs(one_worker: dict[str, Any],
                                                golden: dict[str, Any]) -> None:
    found = first_difference(golden, one_worker)
    assert found is None, f"{found}\n(an intended change? regenerate: `{REGENERATE}`)"


@pytest.mark.timeout(300)
def test_two_worker_processes_produce_the_golden_outputs(
        kafka_bootstrap: str, redis_url: str, tmp_path: Path,
        inputs: tuple[list[Record], list[Record]], golden: dict[str, Any]) -> None:
    assert SITE_SETTINGS.account_from_contract_year, "the settings of `flows --to-end`"
    records, tickets = inputs
    run = run_cli_flow(kafka_bootstrap, redis_url, 9, tmp_path, records,
                       fleet_file=write_fleet_file(tmp_path / "fleet.yaml"),
                       tickets=tickets, processes=2, prefix="golden-cli")
    found = first_difference(golden, canonical(run))
    assert found is None, found


def test_the_input_set_is_the_one_the_golden_files_were_written_from(
        inputs: tuple[list[Record], list[Record]]) -> None:
    """Generated, not committed: the same records every time (the simulator is seeded). A
    change of the simulator or the generator shows here, apart from a change of the flow."""
    assert input_digest(*inputs) == INPUTS_DIGEST.read_text().strip(), \
        f"the input set changed: review, then regenerate with `{REGENERATE}`"
    assert {s.id for s in FLEET.sites} - set(CONTRACTS) == {"nordvik2"}
    assert CONFIG.quality.allowed_lateness_s == 30 and CONFIG.quality.stale_after_s == 10


def test_the_comparison_finds_a_changed_number(golden: dict[str, Any]) -> None:
    """The comparator itself: a golden number moved by more than the tolerance is found
    (with its path); within the tolerance it is not."""
    changed = copy.deepcopy(golden)
    row = changed["history"]["availability"][0]
    assert isinstance(row[5], float)
    row[5] += 1e-6
    found = first_difference(golden, changed)
    assert found is not None and found.startswith("$['history']['availability'][0][5]")
    row[5] -= 1e-6 - 1e-12
    assert first_difference(golden, changed) is None
    changed["topics"]["status"].popitem()
    assert first_difference(golden, changed) is not None
