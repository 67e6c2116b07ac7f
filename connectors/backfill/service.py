"""`bessmon backfill`: check the export, then send it, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from connectors.backfill.importer import Importer
from connectors.backfill.mapping import load_mapping
from connectors.backfill.reader import count_rows
from connectors.history import open_history
from connectors.kafka import SpoolingProducer, ensure_topics
from connectors.settings import Settings
from contracts.fleet import Fleet


def backfill(settings: Settings, fleet: Fleet, source: Path, mapping_file: Path) -> int:
    """Returns how many samples (or status intervals) were sent."""
    mapping = load_mapping(mapping_file)
    importer = Importer(mapping, fleet, source)
    total = count_rows(source)

    def bar(description: str) -> tqdm:  # type: ignore[type-arg]
        return tqdm(total=total, desc=description, unit=" rows", file=sys.stderr,
                    mininterval=0.5, disable=False)

    # A first pass refuses a bad file before anything is sent.
    with bar("checking") as progress:
        if mapping.kind == "telemetry":
            for _ in importer.samples(progress.update):
                pass
        else:
            for _ in importer.intervals(progress.update):
                pass
    bootstrap = settings.require_kafka()
    topic = settings.topic_telemetry if mapping.kind == "telemetry" else settings.topic_status
    ensure_topics(bootstrap, [topic], settings.topic_partitions)
    producer = SpoolingProducer(bootstrap, settings.run_dir / "spool" / "backfill")
    sent = 0
    with bar("sending") as progress:
        if mapping.kind == "telemetry":
            for sample in importer.samples(progress.update):
                producer.produce(topic, sample.device_id, sample.model_dump_json().encode())
                sent += 1
        else:
            history = open_history(settings)
            try:
                batch = []
                for change, row in importer.intervals(progress.update):
                    producer.produce(topic, change.asset_id, change.model_dump_json().encode())
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
    producer.close()
    return sent
