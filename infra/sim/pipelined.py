"""A pymodbus TCP server that answers pipelined requests: several requests in one read of the
socket are all answered, in order.

pymodbus 3.16's request handler takes one frame per read and keeps the rest until more bytes
arrive (a second frame would overwrite the first before it is served, and more than one
frame's bytes waiting are thrown away), so a client with
several requests in flight on one connection waits for answers that never come. The
simulator's gateways use this server and say so in the device list they write (`pipeline`),
so that the connector may keep several polls in flight per gateway, as real gateways that
queue requests allow."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager

PIPELINE = 32  # requests in flight the simulator's gateways take (what the device list says)


class _PipelinedHandler(ServerRequestHandler):  # type: ignore[misc]
    """Every frame of a read queued, then served one after another."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)  # type: ignore[no-untyped-call]
        # pymodbus drops everything received once more than one frame's bytes wait (its
        # buffer bound is one ADU): several requests in flight are more than that
        self.max_buffer_size = 1 << 16
        self._queue: deque[tuple[Any, Any]] = deque()
        self._serving: tuple[Any, Any] = (None, None)  # the request being served
        self._task: asyncio.Task[None] | None = None

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        used = 0
        try:
            while used < len(data):
                n = TransactionManager.callback_data(self, data[used:], addr)
                if self.last_pdu is not None:
                    self._queue.append((self.last_pdu, addr))
                if n == 0:
                    break
                used += n
        except ModbusIOException as exc:
            response = ExceptionResponse(0 if exc.fcode is None else exc.fcode,
                                         exception_code=ExcCodes.ILLEGAL_FUNCTION,
                                         device_id=exc.dev_id, transaction=exc.transaction_id)
            self.server_send(response, addr)  # type: ignore[no-untyped-call]
            used = len(data)
        # pymodbus' handle_request reads these after its await: keep the one being served
        self.last_pdu, self.last_addr = self._serving
        if self._queue and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
        return used

    async def _serve(self) -> None:
        try:
            while self._queue:
                self._serving = self._queue.popleft()
                self.last_pdu, self.last_addr = self._serving
                await self.handle_request()  # type: ignore[no-untyped-call]
        finally:
            self._serving = (None, None)
            self._task = None


class PipelinedModbusTcpServer(ModbusTcpServer):  # type: ignore[misc]
    """`ModbusTcpServer` whose connections answer pipelined requests."""

    def callback_new_connection(self) -> _PipelinedHandler:
        return _PipelinedHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)
