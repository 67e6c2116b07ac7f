"""Free loopback ports for local services.

A port is picked below the OS's ephemeral range (Linux: `ip_local_port_range`, 32768–60999
by default), where the OS never puts the source port of an outgoing connection: a port the
OS itself picked for us is one of those, and a client connecting anywhere meanwhile (a
broker client, a Redis pool) could take it before the service binds it — "address already
in use"."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_LOW = 32768  # Linux's default; the IANA range (macOS) starts higher
SPAN = 12_000  # how many ports below the ephemeral range are picked from
# Its own generator: a test that seeds the module's (hypothesis does) must not make two
# test processes pick the same ports in step.
_PICK = random.SystemRandom()


def pick_range() -> tuple[int, int]:
    """The ports picked from: the `SPAN` below the ephemeral range, never under 1024."""
    try:
        low = int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        low = DEFAULT_EPHEMERAL_LOW
    top = max(low - 1, 2048)
    return max(1024, top - SPAN), top


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, outside the ephemeral range."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on right now, outside the ephemeral range:
    each bound (held open together while the others are picked) to be sure it is free."""
    low, high = pick_range()
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(1000 * count):
            if len(ports) == count:
                return ports
            port = _PICK.randint(low, high)
            if port in ports:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
            ports.append(port)
        if len(ports) == count:
            return ports
        raise OSError(f"no {count} free ports on {host} in {low}–{high}")
    finally:
        for sock in socks:
            sock.close()


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
