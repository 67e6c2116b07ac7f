"""The Modbus connector process: poll the configured devices, publish every sample and every
change of a device's health — and, as the owner of the devices' connections, execute the
commands of its units and enforce the hard limits on every poll (commands.py).

The control configuration (`settings.control_file`) is read before anything starts: a
broken file stops the connector with its file, key and problem, rather than leaving units
unguarded. Every connector process reads the commands topic as a group of its own, from its
end (none replays old commands), and answers on the results topic; both topics are created
if missing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from connectors.kafka import ensure_topics
from connectors.modbus.commands import CommandExecutor, ResultPublisher
from connectors.modbus.devices import DeviceList, load_devices, shard
from connectors.modbus.poller import ModbusConnector
from connectors.modbus.profile import load_profiles
from connectors.publish import DevicePublisher
from connectors.settings import Settings
from contracts.control import load_control
from contracts.errors import InvalidInput
from contracts.fleet import load_fleet

log = logging.getLogger(__name__)


async def run_modbus_connector(settings: Settings, devices_file: Path,
                               stop: asyncio.Event | None = None, *,
                               commands_ready: asyncio.Event | None = None,
                               part: tuple[int, int] = (0, 1)) -> None:
    """Poll until `stop` is set: samples go to the telemetry topic, health changes to the
    device health topic, refused values, answers and commands to the dead-letter topic, all
    keyed by device id; command results to the results topic, keyed by unit id.
    `commands_ready` is set once commands are read (one produced after it is executed).
    `part` (I, N): only shard I of N of the device list (`devices.shard`: whole gateways);
    commands for units of other shards are theirs."""
    fleet = load_fleet(settings.fleet_file)
    profiles = load_profiles(settings.profiles_dir)
    index, count = part
    listed = load_devices(devices_file).devices
    mine = shard(listed, index, count)
    if not mine:
        gateways = len({(d.host, d.port) for d in listed})
        raise InvalidInput(str(devices_file), "", f"shard {index}/{count} has no device: the "
                           f"list has {gateways} gateway(s), one shard polls whole gateways")
    devices = DeviceList(devices=mine)
    control = load_control(settings.control_file)
    # Its own spool and name per shard: N connectors never share a spool directory.
    name = f"modbus-{devices_file.stem}" + (f"-{index + 1}of{count}" if count > 1 else "")
    bootstrap = settings.require_kafka()
    ensure_topics(bootstrap, [settings.topic_commands, settings.topic_command_results],
                  settings.topic_partitions)
    publisher = DevicePublisher(settings, name)
    results = ResultPublisher(settings, name)

    connector = ModbusConnector.from_devices(devices.devices, fleet, profiles,
                                             publish=publisher.sample,
                                             publish_health=publisher.health,
                                             publish_dead=publisher.dead,
                                             publish_stats=publisher.stats,
                                             stats_every_s=settings.stats_every_s)
    executor = CommandExecutor(connector, control, fleet, publish_result=results)
    log.info("polling %d devices into %s", len(devices.devices), settings.topic_telemetry)
    stop = stop or asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(executor.run(
                stop, bootstrap=bootstrap, topic=settings.topic_commands,
                group_id=f"connector-{name}-{uuid.uuid4().hex[:12]}", ready=commands_ready))
            await connector.run(stop)
    finally:
        results.close()
        publisher.close()
