"""Free ports for the local services: many asked for at once are all different and free."""

from __future__ import annotations

import socket

from infra.ports import free_ports, is_listening


def test_ports_asked_for_together_are_distinct_and_bindable() -> None:
    ports = free_ports(200)
    assert len(set(ports)) == 200
    assert not any(is_listening("127.0.0.1", p, timeout_s=0.2) for p in ports[:20])
    socks = []
    try:
        for port in ports:  # every one of them can be listened on, all at the same time
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
            sock.listen()
    finally:
        for sock in socks:
            sock.close()
