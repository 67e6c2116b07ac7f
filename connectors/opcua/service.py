"""The OPC UA connector process: subscribe to the configured servers, publish every sample,
every change of a device's health and, every `stats_every_s` (`BESSMON_STATS_EVERY_S`), each
device's comms figures — its session's liveness checks (connectors/opcua/client.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from connectors.opcua.client import (
    DEFAULT_BACKOFF,
    Backoff,
    EndpointCoordinator,
    group_by_connection,
)
from connectors.opcua.config import load_devices, passwords
from connectors.publish import DevicePublisher
from connectors.settings import Settings
from contracts.fleet import load_fleet

log = logging.getLogger(__name__)


async def run_opcua_connector(
    settings: Settings,
    devices_file: Path,
    stop: asyncio.Event | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    watchdog_s: float = 1.0,
) -> list[EndpointCoordinator]:
    """Stay subscribed until `stop` is set: samples go to the telemetry topic, health
    changes and comms figures to the device-health topic and refused values to the
    dead-letter topic, all keyed by device id. `watchdog_s`: seconds between liveness checks
    of each session. Returns the coordinators (their counters and last errors) once
    stopped."""
    stop = stop or asyncio.Event()
    fleet = load_fleet(settings.fleet_file)
    devices = load_devices(devices_file, fleet)  # every device a battery unit of the fleet
    sites = {d.id: fleet.assets[d.id].site_id for d in devices.devices}
    secrets = passwords(devices, os.environ if environ is None else environ, str(devices_file))
    publisher = DevicePublisher(settings, f"opcua-{devices_file.stem}")

    coordinators = [
        EndpointCoordinator(group, password=secrets.get(group[0].id),
                            on_sample=publisher.sample, on_health=publisher.health,
                            on_dead=publisher.dead, on_stats=publisher.stats,
                            backoff=backoff, watchdog_s=watchdog_s,
                            stats_every_s=settings.stats_every_s, sites=sites)
        for group in group_by_connection(devices.devices)
    ]
    log.info("subscribing to %d devices on %d OPC UA endpoints into %s",
             len(devices.devices), len(coordinators), settings.topic_telemetry)
    try:
        async with asyncio.TaskGroup() as group:
            for coordinator in coordinators:
                group.create_task(coordinator.run(stop))
    finally:
        publisher.close()
    return coordinators
