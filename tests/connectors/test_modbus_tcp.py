"""The lean Modbus TCP client (connectors/modbus/tcp.py) against real asyncio servers on
loopback that answer as each test says: pipelined requests answered in order and out of
order, a frame of no request, an exception response, frames split across reads and several
in one, silence, noise; and the frames themselves, byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from connectors.modbus.tcp import (
    ConnectionLost,
    ExceptionAnswer,
    ModbusTcpClient,
    NoAnswer,
    UnusableAnswer,
    read_answer,
    read_request,
    write_answer,
    write_request,
)
from tests.connectors.modbus_sim import HOST

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Request = tuple[int, int, int, int]  # transaction id, unit, address, count


async def read_requests(reader: asyncio.StreamReader, n: int) -> list[Request]:
    """`n` FC3 requests, as the client sent them."""
    requests = []
    for _ in range(n):
        tid, protocol, length, unit, function, address, count = struct.unpack(
            ">HHHBBHH", await reader.readexactly(12))
        assert (protocol, length, function) == (0, 6, 3)
        requests.append((tid, unit, address, count))
    return requests


def answer(tid: int, unit: int, address: int, count: int) -> bytes:
    """The answer of a device whose register at `a` holds `a` (unit 2: `a + 1000`)."""
    words = [a + (1000 if unit == 2 else 0) for a in range(address, address + count)]
    pdu = struct.pack(f">BB{count}H", 3, 2 * count, *words)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


@contextlib.asynccontextmanager
async def client_of(handler: Handler, in_flight: int = 16) -> AsyncIterator[ModbusTcpClient]:
    server = await asyncio.start_server(handler, HOST, 0)
    client = ModbusTcpClient(in_flight=in_flight)
    try:
        await client.connect(HOST, server.sockets[0].getsockname()[1], timeout_s=2)
        yield client
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def reads(unit: int, *blocks: tuple[int, int]) -> list[bytes]:
    return [read_request(0, unit, address, count) for address, count in blocks]


def test_pipelined_requests_answered_in_order_and_out_of_order() -> None:
    """Two batches (two units, three requests) go out before any answer; the server answers
    them in reverse order and every answer reaches its own request."""
    seen: list[Request] = []

    async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = await read_requests(reader, 3)
        seen.extend(requests)
        writer.write(b"".join(answer(*r) for r in reversed(requests)))
        await writer.drain()
        await reader.read()  # until the client hangs up

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with client_of(reverse) as client:
            first = client.send(1, reads(1, (0, 4), (10, 2)), timeout_s=2)
            second = client.send(2, reads(2, (5, 3)), timeout_s=2)
            return await first, await second

    first, second = asyncio.run(scenario())
    assert len({tid for tid, *_ in seen}) == 3  # one transaction id each
    assert [read_answer(pdu, n) for pdu, n in zip(first, (4, 2), strict=True)] == [
        struct.pack(">4H", 0, 1, 2, 3), struct.pack(">2H", 10, 11)]
    assert registers(read_answer(second[0], 3)) == [1005, 1006, 1007]


def test_one_request_in_flight_waits_for_each_answer() -> None:
    """`in_flight=1` (a gateway that takes no pipelined requests): the second request is sent
    only once the first is answered."""
    outstanding: list[int] = []

    async def serial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            (request,) = await read_requests(reader, 1)
            await asyncio.sleep(0.01)  # anything sent meanwhile would be waiting in the buffer
            outstanding.append(len(reader._buffer))  # type: ignore[attr-defined]
            writer.write(answer(*request))
        await reader.read()

    async def scenario() -> list[bytes]:
        async with client_of(serial, in_flight=1) as client:
            return await client.send(1, reads(1, (0, 1), (1, 1), (2, 1)), timeout_s=2)

    answers = asyncio.run(scenario())
    assert [registers(read_answer(pdu, 1)) for pdu in answers] == [[0], [1], [2]]
    assert outstanding == [0, 0, 0]


def test_frames_split_across_reads_and_two_frames_in_one() -> None:
    """An answer that arrives a byte at a time, then two answers in one write."""

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, second, third = await read_requests(reader, 3)
        for byte in answer(*first):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(answer(*second) + answer(*third))
        await reader.read()

    async def scenario() -> list[bytes]:
        async with client_of(dribble) as client:
            return await client.send(1, reads(1, (0, 2), (7, 1), (9, 3)), timeout_s=2)

    answers = asyncio.run(scenario())
    assert [registers(read_answer(pdu, n)) for pdu, n in zip(answers, (2, 1, 3), strict=True)] \
        == [[0, 1], [7], [9, 10, 11]]


def test_a_frame_of_no_request_is_not_taken_and_told_when_the_time_runs_out() -> None:
    """An answer with another transaction id (or of another unit) is no answer: the request
    times out, with those bytes; a request answered properly beside it is not disturbed."""

    async def stray(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (tid, unit, address, count), good = await read_requests(reader, 2)
        writer.write(answer(tid ^ 0x5555, unit, address, count))  # another transaction
        writer.write(answer(tid, 7, address, count))  # the transaction, another unit
        writer.write(answer(*good))
        await reader.read()

    async def scenario() -> tuple[NoAnswer, list[bytes]]:
        async with client_of(stray) as client:
            lost = client.send(1, reads(1, (0, 2)), timeout_s=0.2)
            fine = client.send(1, reads(1, (4, 1)), timeout_s=2)
            with pytest.raises(NoAnswer) as caught:
                await lost
            return caught.value, await fine

    error, fine = asyncio.run(scenario())
    assert str(error) == "no answer within 0.2 s"
    # the bytes of the last stray frame: the one of the transaction, from unit 7
    assert error.received[6] == 7 and error.received[2:] == answer(0, 7, 0, 2)[2:]
    assert registers(read_answer(fine[0], 1)) == [4]


def test_silence_times_out_with_nothing_received() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def scenario() -> NoAnswer:
        async with client_of(silent) as client:
            with pytest.raises(NoAnswer) as caught:
                await client.send(1, reads(1, (0, 2), (5, 5)), timeout_s=0.05)
            assert client.connected  # dropping it is the gateway's decision
            return caught.value

    error = asyncio.run(scenario())
    assert (error.received, error.index) == (b"", 0)


def test_noise_drops_the_connection_and_blames_the_oldest_request() -> None:
    async def noisy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_requests(reader, 2)
        writer.write(b"\x12\x34\xff\xff" + bytes(20))  # protocol id 0xFFFF: no frame
        await reader.read()

    async def scenario() -> tuple[BaseException | None, BaseException | None, bool]:
        async with client_of(noisy) as client:
            oldest = client.send(1, reads(1, (0, 2)), timeout_s=2)
            other = client.send(2, reads(2, (0, 2)), timeout_s=2)
            await asyncio.wait([oldest, other])
            return oldest.exception(), other.exception(), client.connected

    oldest, other, connected = asyncio.run(scenario())
    assert isinstance(oldest, ConnectionLost) and oldest.received.startswith(b"\x12\x34\xff\xff")
    assert isinstance(other, ConnectionLost) and other.received == b""
    assert not connected


def test_an_exception_response_and_unusable_answers() -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (tid, unit, _, _), = await read_requests(reader, 1)
        writer.write(struct.pack(">HHHBBB", tid, 0, 3, unit, 0x83, 2))
        await reader.read()

    async def scenario() -> list[bytes]:
        async with client_of(refusing) as client:
            return await client.send(1, reads(1, (0, 2)), timeout_s=2)

    (pdu,) = asyncio.run(scenario())
    with pytest.raises(ExceptionAnswer) as caught:
        read_answer(pdu, 2)
    assert (caught.value.function, caught.value.code) == (3, 2)


@pytest.mark.parametrize(("pdu", "says"), [
    (bytes([3, 2, 0, 1]), "answered 1 registers"),
    (bytes([3, 6, 0, 1, 0, 2, 0, 3]), "answered 3 registers"),
    (bytes([3, 8, 0, 1]), "a byte count of 8 in a frame of 2 data bytes"),
    (bytes([3, 3, 0, 1, 2]), "a byte count of 3 in a frame of 3 data bytes"),
    (bytes([4, 4, 0, 1, 0, 2]), "function 4 (ReadInputRegistersResponse), not 3"),
    (bytes([3]), "a byte count of None"),
])
def test_read_answers_that_are_no_answer(pdu: bytes, says: str) -> None:
    with pytest.raises(UnusableAnswer, match=says.replace("(", r"\(").replace(")", r"\)")):
        read_answer(pdu, 2)


def test_request_frames_byte_by_byte() -> None:
    assert read_request(7, 3, 40000, 125).hex(" ") == "00 07 00 00 00 06 03 03 9c 40 00 7d"
    assert write_request(1, 2, 10, [500]).hex(" ") == "00 01 00 00 00 06 02 06 00 0a 01 f4"
    assert write_request(1, 2, 13, [0, 25000]).hex(" ") == \
        "00 01 00 00 00 0b 02 10 00 0d 00 02 04 00 00 61 a8"
    write_answer(bytes.fromhex("06 00 0a 01 f4"), 6)  # the echo (or what the device holds)
    write_answer(bytes.fromhex("10 00 0d 00 02"), 16)
    with pytest.raises(UnusableAnswer, match="function 3"):
        write_answer(bytes.fromhex("03 02 00 01"), 6)
    with pytest.raises(ExceptionAnswer):
        write_answer(bytes.fromhex("90 02"), 16)


def test_a_closed_client_fails_at_once() -> None:
    async def scenario() -> BaseException | None:
        client = ModbusTcpClient()
        future = client.send(1, reads(1, (0, 1)), timeout_s=1)
        return future.exception()

    assert isinstance(asyncio.run(scenario()), ConnectionLost)
