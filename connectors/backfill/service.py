"""`bessmon backfill`: check the export, then send it, with a progress bar. Nothing is sent
from a file that is refused (`InvalidInput`, exit status 2): the first pass reads it whole."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from connectors.backfill.importer import Importer
from connectors.backfill.mapping import load_mapping
from connectors.backfill.reader import count_rows
from connectors.history import open_history
from connectors.kafka import SpoolingProducer, ensure_topics
from connectors.settings import Settings
from contracts.errors import InvalidInput
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring


def prepare(settings: Settings, fleet: Fleet, source: Path, mapping_file: Path
            ) -> Importer:
    """The importer of `source`, its mapping read and checked against the monitoring
    config (a device type must have a tag map there: its values are checked by it)."""
    mapping = load_mapping(mapping_file)
    monitoring = load_monitoring(settings.monitoring_file)
    if mapping.device_type is not None and mapping.device_type not in monitoring.device_types:
        raise InvalidInput(str(mapping_file), "device_type", f"{mapping.device_type!r} has no "
                           f"tag map in {settings.monitoring_file} (known: "
                           f"{', '.join(sorted(monitoring.device_types)) or 'none'})")
    return Importer(mapping, fleet, source, monitoring)


def check(importer: Importer, progress: Callable[[int], object] = lambda n: None) -> int:
    """The first pass: the whole file read and checked, nothing sent; how many samples (or
    status intervals) it holds. `InvalidInput` for the first problem."""
    found = 0
    records = importer.samples(progress) if importer.mapping.kind == "telemetry" else \
        importer.intervals(progress)
    for _ in records:
        found += 1
    return found


def backfill(settings: Settings, fleet: Fleet, source: Path, mapping_file: Path) -> int:
    """Returns how many samples (or status intervals) were sent."""
    importer = prepare(settings, fleet, source, mapping_file)
    mapping = importer.mapping
    total = count_rows(source)

    def bar(description: str) -> tqdm:  # type: ignore[type-arg]
        return tqdm(total=total, desc=description, unit=" rows", file=sys.stderr,
                    mininterval=0.5, disable=False)

    # A first pass refuses a bad file before anything is sent.
    with bar("checking") as progress:
        check(importer, progress.update)
    bootstrap = settings.require_kafka()
    topic = settings.topic_telemetry if mapping.kind == "telemetry" else settings.topic_status
    ensure_topics(bootstrap, [topic], settings.topic_partitions)
    producer = SpoolingProducer(bootstrap, settings.run_dir / "spool" / "backfill")
    sent = 0
    try:
        with bar("sending") as progress:
            if mapping.kind == "telemetry":
                for sample in importer.samples(progress.update):
                    producer.produce(topic, sample.device_id,
                                     sample.model_dump_json().encode())
                    sent += 1
            else:
                history = open_history(settings)
                try:
                    batch = []
                    for change, row in importer.intervals(progress.update):
                        producer.produce(topic, change.asset_id,
                                         change.model_dump_json().encode())
                        batch.append(row)
                        sent += 1
                        if len(batch) >= 5000:
                            history.write_status(batch)
                            batch = []
                    if batch:
                        history.write_status(batch)
                finally:
                    history.close()
            producer.flush(300)
    finally:
        producer.close()
    return sent
