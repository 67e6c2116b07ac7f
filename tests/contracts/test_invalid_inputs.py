"""Every kind of invalid input of availability rules §1 is refused with the file, line or key, and
what is wrong — by the parsers and by `bessmon contracts evaluate` (exit status 2, stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contracts.contract import parse_contract
from contracts.errors import InvalidInput
from contracts.intervals import parse_exclusions_csv, parse_status_csv
from infra.cli import main
from tests.contracts.builders import BASE_CONTRACT, FLEET

HEADER = "asset_id,start,end,state,derate_fraction,cause\n"
OK_ROW = "u1,2026-06-01T00:00:00+02:00,2026-06-02T00:00:00+02:00,available,,\n"


@pytest.mark.parametrize(("rows", "message"), [
    ("ghost,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,available,,\n",
     "S.csv:3: asset_id: unknown asset 'ghost'"),
    ("alpha,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,available,,\n",
     "S.csv:3: asset_id: 'alpha' is a site; status is per unit, inverter or block"),
    ("u2,2026-06-02T00:00:00Z,2026-06-02T00:00:00Z,available,,\n",
     "S.csv:3: end: 2026-06-02T00:00:00Z is not after start 2026-06-02T00:00:00Z"),
    ("u2,2026-06-02T00:00:00,2026-06-03T00:00:00Z,available,,\n",
     "S.csv:3: start: '2026-06-02T00:00:00' has no UTC offset (add +02:00 or Z)"),
    ("u2,yesterday,2026-06-03T00:00:00Z,available,,\n",
     "S.csv:3: start: not an ISO-8601 time: 'yesterday'"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,broken,,\n",
     "S.csv:3: state: 'broken' is not one of available, derated, unavailable, unknown"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,derated,,\n",
     "S.csv:3: derate_fraction: required when state is derated"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,derated,1.5,\n",
     "S.csv:3: derate_fraction: 1.5 is outside 0..1"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,derated,half,\n",
     "S.csv:3: derate_fraction: not a number: 'half'"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,available,0.5,\n",
     "S.csv:3: derate_fraction: must be empty when state is available"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,unavailable,,lightning\n",
     "S.csv:3: cause: 'lightning' is not one of fault, forced_outage, planned_corrective, "
     "scheduled_maintenance, grid_outage, force_majeure, customer_request, environmental, "
     "comms_loss"),
    ("u2,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,available\n",
     "S.csv:3: 4 fields, expected 6"),
    ("u1,2026-06-01T12:00:00+02:00,2026-06-03T00:00:00+02:00,available,,\n",
     "S.csv:3: start: interval of u1 overlaps the one on line 2"),
    # Nothing is guessed: an unclosed quote would swallow the rows after it ...
    ('u2,"2026-06-02T00:00:00Z,2026-06-03T00:00:00Z,available,,\n',
     "S.csv:3: unterminated quote: the quoted field opened on this line runs to the end of "
     "the file"),
    ('u2,"2026-06-02T00:00:00Z,2026-06-03T00:00:00Z,available,,\n'
     'u2,2026-06-03T00:00:00Z",2026-06-04T00:00:00Z,available,,\n',
     "S.csv:3: unterminated quote: the quoted field opened on this line runs on to line 4"),
    ('u2,"2026-06-02T00:00:00Z"x,2026-06-03T00:00:00Z,available,,\n',
     "S.csv:3: not valid CSV: ',' expected after '\"'"),
    # ... and a 7th fractional digit would be dropped, moving the time.
    ("u2,2026-06-02T00:00:00.0000001Z,2026-06-03T00:00:00Z,available,,\n",
     "S.csv:3: start: '2026-06-02T00:00:00.0000001Z' has more than 6 fractional digits of a "
     "second; times are exact to the microsecond"),
    ('u2,2026-06-02T00:00:00Z,"2026-06-03T00:00:00,1234567+00:00",available,,\n',
     "S.csv:3: end: '2026-06-03T00:00:00,1234567+00:00' has more than 6 fractional digits "
     "of a second; times are exact to the microsecond"),
])
def test_invalid_status_rows(rows: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_status_csv(HEADER + OK_ROW + rows, "S.csv", FLEET)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ("", "S.csv:1: empty file; expected the header asset_id,start,end,state,derate_fraction,"
         "cause"),
    ("asset_id,start,end,state,cause\n", "S.csv:1: header: missing column 'derate_fraction'; "
     "expected asset_id,start,end,state,derate_fraction,cause"),
    ("asset_id,start,end,state,derate_fraction,cause,note\n", "S.csv:1: header: unknown "
     "column 'note'; expected asset_id,start,end,state,derate_fraction,cause"),
])
def test_invalid_status_headers(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_status_csv(text, "S.csv", FLEET)
    assert str(caught.value) == message


def test_quoted_fields_and_microseconds_are_taken_as_written() -> None:
    text = (HEADER + '"u2","2026-06-02T00:00:00.000001Z",2026-06-03T00:00:00.5+02:00,'
            'available,"",\n')
    [row] = parse_status_csv(text, "S.csv", FLEET)
    # 1 µs after 2 June 00:00 UTC; half a second after 2 June 22:00 UTC.
    assert (row.asset_id, row.start_us % 1_000_000, row.end_us - row.start_us) == (
        "u2", 1, 22 * 3_600_000_000 + 500_000 - 1)


def test_status_rows_of_other_sites_and_any_column_order_are_valid() -> None:
    text = ("cause,state,asset_id,end,start,derate_fraction\n"
            ",available,v1,2026-06-02T00:00:00Z,2026-06-01T00:00:00Z,\n\n"
            "fault,derated,u1,2026-06-02T00:00:00Z,2026-06-01T00:00:00Z,0.25\n")
    rows = parse_status_csv(text, "S.csv", FLEET)
    assert [(r.asset_id, r.state, r.derate_fraction, r.cause) for r in rows] == [
        ("v1", "available", None, None), ("u1", "derated", 0.25, "fault")]


@pytest.mark.parametrize(("row", "message"), [
    ("u1-i1,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,grid_outage",
     "X.csv:2: scope_id: 'u1-i1' is not a site or battery unit of the fleet"),
    ("alpha,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,storm",
     "X.csv:2: reason: 'storm' is not one of fault, forced_outage, planned_corrective, "
     "scheduled_maintenance, grid_outage, force_majeure, customer_request, environmental, "
     "comms_loss"),
    ("alpha,2026-06-02T00:00:00Z,2026-06-01T00:00:00Z,grid_outage",
     "X.csv:2: end: 2026-06-01T00:00:00Z is not after start 2026-06-02T00:00:00Z"),
    ('alpha,2026-06-01T00:00:00Z,2026-06-02T00:00:00Z,"grid_outage\n'
     "alpha,2026-06-03T00:00:00Z,2026-06-04T00:00:00Z,grid_outage",
     "X.csv:2: unterminated quote: the quoted field opened on this line runs to the end of "
     "the file"),
])
def test_invalid_exclusion_rows(row: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_exclusions_csv("scope_id,start,end,reason\n" + row + "\n", "X.csv", FLEET)
    assert str(caught.value) == message


def contract_text(**changes: object) -> str:
    data = json.loads(json.dumps(BASE_CONTRACT))
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(("text", "message"), [
    ("id: [unclosed\n", "C.yaml:2: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    (contract_text(measurement_period="week"),
     "C.yaml:5: measurement_period: must be 'month', 'quarter' or 'contract_year' (got 'week')"),
    (contract_text(term_years=0), "C.yaml:4: term_years: must be greater than or equal to 1 "
                                  "(got 0)"),
    (contract_text(start="2024-02-30"), "C.yaml:3: start: '2024-02-30' is not a date: day is "
                                        "out of range for month"),
    # A datetime, a timestamp or a yes where a date or number is wanted: refused, not cut.
    (contract_text().replace("start: '2024-06-01'", "start: 2024-06-15T00:00"),
     "C.yaml:3: start: must be a date written YYYY-MM-DD (got '2024-06-15T00:00')"),
    (contract_text(start=1718409600),
     "C.yaml:3: start: must be a date written YYYY-MM-DD (got 1718409600)"),
    (contract_text(guarantee={"default_pct": True}),
     "C.yaml:16: guarantee.default_pct: must be a valid number (got True)"),
    (contract_text(term_years="20"), "C.yaml:4: term_years: must be a valid integer (got '20')"),
    (contract_text(colour="red"), "C.yaml:24: colour: extra inputs are not permitted "
                                  "(got 'red')"),
    (contract_text(guarantee={"default_pct": 101}),
     "C.yaml:16: guarantee.default_pct: must be less than or equal to 100 (got 101)"),
    # A key of a mapping is written as one, whether the error is in the key or its value.
    (contract_text(guarantee={"default_pct": 97, "by_contract_year": {1: 98, 0: 98}}),
     "C.yaml:19: guarantee.by_contract_year.0: must be greater than or equal to 1 (got 0)"),
    (contract_text(guarantee={"default_pct": 97, "by_contract_year": {1: 98, 2: 101}}),
     "C.yaml:19: guarantee.by_contract_year.2: must be less than or equal to 100 (got 101)"),
    (contract_text(guarantee={"default_pct": 97, "by_contract_year": {25: 98}}),
     "C.yaml:15: guarantee: by_contract_year names year 25 of a 20-year term"),
    (contract_text(ld={"currency": "euro", "step_pct": 0.01, "rate_per_pct": 1,
                       "cap_per_contract_year": 1}),
     "C.yaml:19: ld.currency: must be a three-letter ISO 4217 code such as EUR (got 'euro')"),
])
def test_invalid_contracts(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_contract(text, "C.yaml")
    assert str(caught.value) == message


@pytest.mark.parametrize(("commissioned", "message"), [
    ("2024-09-20T12:00", "F.yaml:7: sites[0].units[0].commissioned: must be a date written "
                         "YYYY-MM-DD (got '2024-09-20T12:00')"),
    ("2024-09-31", "F.yaml:7: sites[0].units[0].commissioned: '2024-09-31' is not a date: day "
                   "is out of range for month"),
])
def test_a_commissioning_date_must_be_a_date(commissioned: str, message: str) -> None:
    from contracts.fleet import parse_fleet

    text = ("sites:\n- id: a\n  customer: C\n  region: R\n  timezone: UTC\n  units:\n"
            f"  - {{id: u, rated_power_kw: 1, rated_energy_kwh: 1, commissioned: {commissioned}}}"
            "\n")
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(text, "F.yaml")
    assert str(caught.value) == message


# -- the command --------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"sites": [{
        "id": "alpha", "customer": "Alpha AB", "region": "SE3",
        "timezone": "Europe/Stockholm",
        "units": [{"id": "alpha-u01", "rated_power_kw": 2500, "rated_energy_kwh": 5000,
                   "commissioned": "2024-09-20"}]}]}))
    contract = tmp_path / "contract.yaml"
    contract.write_text(contract_text(site="alpha", start="2024-10-01"))
    status = tmp_path / "status.csv"
    status.write_text(HEADER + "alpha-u01,2026-10-01T00:00:00+02:00,2026-10-10T00:00:00+02:00,"
                      "available,,\nalpha-u01,2026-10-10T00:00:00+02:00,2026-10-10T03:30:00+02:00,"
                      "unavailable,,fault\nalpha-u01,2026-10-10T03:30:00+02:00,"
                      "2026-11-01T00:00:00+01:00,available,,\n")
    exclusions = tmp_path / "exclusions.csv"
    exclusions.write_text("scope_id,start,end,reason\nalpha,2026-10-20T00:00:00+02:00,"
                          "2026-10-20T12:00:00+02:00,grid_outage\n")
    return {"fleet": fleet, "contract": contract, "status": status, "exclusions": exclusions}


def argv(files: dict[str, Path], *extra: str) -> list[str]:
    return ["contracts", "evaluate", "--fleet", str(files["fleet"]), "--contract",
            str(files["contract"]), "--status", str(files["status"]), "--exclusions",
            str(files["exclusions"]), *extra]


def test_evaluate_prints_exactly_the_json_of_section_7(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv(files, "--period", "2026-10", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    # 745 h, 12 h excluded, 3.5 h lost: A = 1 - 3.5 / 733 = 99.52251…%
    assert out == {"contract_id": "LTSA-T", "currency": "EUR", "periods": [{
        "period": "2026-10", "start": "2026-10-01T00:00:00+02:00",
        "end": "2026-11-01T00:00:00+01:00", "contract_year": 3,
        "availability_pct": 99.523, "guaranteed_pct": 97.0, "shortfall_pct": 0.0,
        "ld": 0.0, "bonus": 0.0,
        "units": [{"asset_id": "alpha-u01", "window_hours": 745.0, "excluded_hours": 12.0,
                   "lost_hours": 3.5, "availability_pct": 99.523}]}]}


def test_evaluate_csv_has_one_row_per_period_per_unit(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv(files, "--period", "2026-10..2026-11", "--csv")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("contract_id,currency,period,start,end,contract_year,")
    assert len(lines) == 3
    assert lines[1].split(",")[2] == "2026-10" and lines[2].split(",")[2] == "2026-11"


@pytest.mark.parametrize(("change", "message"), [
    ({"period": "2026-Q4"}, "bessmon: --period: period '2026-Q4' is a quarter, but the "
                            "contract measures by month"),
    ({"contract_site": "gamma"}, "bessmon: {contract}: site: site 'gamma' is not in the fleet"),
    ({"status_row": "alpha-u01,2026-10-01T00:00:00+02:00,2026-10-01T00:00:00+02:00,"
                    "available,,"},
     "bessmon: {status}:5: end: 2026-10-01T00:00:00+02:00 is not after start "
     "2026-10-01T00:00:00+02:00"),
    ({"missing": "status"}, "bessmon: {status}: cannot read: No such file or directory"),
    ({"period": "9999-12"}, "bessmon: --period: period 9999-12 lies outside the contract "
                            "term (2024-10-01 to 2044-10-01)"),
    ({"period": "0000-01"}, "bessmon: --period: period 0000-01 lies outside the contract "
                            "term (2024-10-01 to 2044-10-01)"),
    ({"contract_start": "9990-01-01"},
     "bessmon: {contract}:4: term_years: a 20-year term from 9990-01-01 does not lie within "
     "the years 1900..9998"),
])
def test_evaluate_refuses_invalid_input_with_status_2(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str],
        change: dict[str, str], message: str) -> None:
    period = change.get("period", "2026-10")
    if "contract_site" in change:
        files["contract"].write_text(contract_text(site=change["contract_site"]))
    if "contract_start" in change:
        files["contract"].write_text(contract_text(site="alpha",
                                                   start=change["contract_start"]))
    if "status_row" in change:
        with files["status"].open("a") as f:
            f.write(change["status_row"] + "\n")
    if "missing" in change:
        files["status"].unlink()
    assert main(argv(files, "--period", period)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == message.format(**{k: str(v) for k, v in files.items()})


@pytest.mark.parametrize("name", ["status", "exclusions", "fleet", "contract"])
def test_a_file_that_is_not_utf8_is_refused_with_its_name_line_and_byte(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = files[name]
    valid = path.read_bytes()
    lines = valid.count(b"\n")
    # A Latin-1 "é" (0xe9) on a new last line, after "# caf" or "caf" (3 or 5 bytes).
    prefix = b"# caf" if name in ("fleet", "contract") else b"caf"
    path.write_bytes(valid + prefix + b"\xe9\n")
    assert main(argv(files, "--period", "2026-10")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"bessmon: {path}:{lines + 1}: not UTF-8 text (byte 0xe9 at "
                            f"offset {len(valid) + len(prefix)})\n")


def test_a_value_error_inside_a_command_is_not_called_an_invalid_setting(
        files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Only settings from the environment are "invalid settings"; anything else that is not
    an `InvalidInput` is a bug and must show as one, not send the user to the environment."""
    import contracts.engine

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("year 10000 is out of range")

    monkeypatch.setattr(contracts.engine, "evaluate", broken)
    with pytest.raises(ValueError, match="year 10000"):
        main(argv(files, "--period", "2026-10"))


def test_an_invalid_setting_is_still_reported_as_one(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.settings import get_settings

    monkeypatch.setenv("BESSMON_TOPIC_PARTITIONS", "many")
    get_settings.cache_clear()  # settings are read once per process
    assert main(argv(files, "--period", "2026-10")) == 2
    err = capsys.readouterr().err
    assert err.startswith("bessmon: invalid setting: ") and "topic_partitions" in err
