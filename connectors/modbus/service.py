"""The Modbus connector process: poll the configured devices, publish every sample and every
change of a device's health."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from connectors.modbus.devices import load_devices
from connectors.modbus.poller import ModbusConnector
from connectors.modbus.profile import load_profiles
from connectors.publish import DevicePublisher
from connectors.settings import Settings
from contracts.fleet import load_fleet

log = logging.getLogger(__name__)


async def run_modbus_connector(settings: Settings, devices_file: Path,
                               stop: asyncio.Event | None = None) -> None:
    """Poll until `stop` is set: samples go to the telemetry topic, health changes to the
    device health topic, refused values and answers to the dead-letter topic, all keyed by
    device id."""
    fleet = load_fleet(settings.fleet_file)
    profiles = load_profiles(settings.profiles_dir)
    devices = load_devices(devices_file)
    publisher = DevicePublisher(settings, f"modbus-{devices_file.stem}")

    connector = ModbusConnector.from_devices(devices.devices, fleet, profiles,
                                             publish=publisher.sample,
                                             publish_health=publisher.health,
                                             publish_dead=publisher.dead)
    log.info("polling %d devices into %s", len(devices.devices), settings.topic_telemetry)
    try:
        await connector.run(stop)
    finally:
        publisher.close()
