"""The Modbus connector process: poll the configured devices, publish every sample."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from connectors.kafka import CheckedProducer, ensure_topics
from connectors.modbus.devices import load_devices
from connectors.modbus.poller import DeviceMap, poll_devices
from connectors.modbus.profile import load_profiles
from connectors.settings import Settings
from contracts.events import TelemetrySample
from contracts.fleet import load_fleet

log = logging.getLogger(__name__)


async def run_modbus_connector(settings: Settings, devices_file: Path,
                               stop: asyncio.Event | None = None) -> None:
    """Poll until `stop` is set; every sample goes to the telemetry topic keyed by device."""
    fleet = load_fleet(settings.fleet_file)
    profiles = load_profiles(settings.profiles_dir)
    devices = load_devices(devices_file)
    maps = [DeviceMap.build(d, fleet, profiles) for d in devices.devices]
    bootstrap = settings.require_kafka()
    ensure_topics(bootstrap, [settings.topic_telemetry], settings.topic_partitions)
    producer = CheckedProducer(bootstrap)

    def publish(sample: TelemetrySample) -> None:
        producer.produce(settings.topic_telemetry, sample.device_id,
                         sample.model_dump_json().encode())

    log.info("polling %d devices into %s", len(maps), settings.topic_telemetry)
    try:
        await poll_devices(maps, publish, stop=stop)
    finally:
        producer.flush()
