"""The ways a fleet arrives: HTTPS kept alive, HTTPS with new TLS per device, MQTT and AMQP per
device.

HTTPS over kept-alive connections, HTTPS with a new TLS connection per device (what first-boot
devices do), and MQTT and AMQP (SASL PLAIN, as the Node SDK) with a new connection per device.

Each device's latency runs from the start of its register (connection included, when it makes
one) to `assigned`, polls included. Load is closed (a fixed number of devices registering at
once) or, with a rate, open (devices arrive at that rate whatever the answers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from devprov.bench.fleet import Fleet
from devprov.bench.scenarios import SCENARIOS  # noqa: F401  (re-exported)
from devprov.bench.wire import AmqpClient, MqttClient, WireError, http_request
from devprov.protocol import mqtt
from devprov.protocol.amqp_types import DecodeError

DEVICE_TIMEOUT_SECONDS = 30.0


@dataclass
class Target:
    host: str
    https_port: int
    mqtt_port: int
    context: ssl.SSLContext
    amqp_port: int = 5671


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Connection:
    """One kept-alive HTTPS connection, reopened when the server closes it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.streams is None or self.streams[1].is_closing():
            self.streams = await asyncio.open_connection(
                self.target.host, self.target.https_port, ssl=self.target.context
            )
        return self.streams

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def https_register(fleet: Fleet, number: int, connection: Connection) -> str:
    """Register one device; answers its assigned hub."""
    registration_id = fleet.registration_id(number)
    headers = {
        "Host": connection.target.host,
        "Authorization": fleet.token(registration_id),
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
    }
    reader, writer = await connection.open()
    status, answer_headers, body = await http_request(
        reader, writer, "PUT", fleet.register_path(registration_id), headers,
        fleet.body(registration_id),
    )  # fmt: skip
    while status == 202:
        operation = json.loads(body)["operationId"]
        await asyncio.sleep(float(answer_headers.get("retry-after", "1")))
        reader, writer = await connection.open()
        path = fleet.register_path(registration_id).replace(
            "/register?", f"/operations/{operation}?"
        )
        status, answer_headers, body = await http_request(reader, writer, "GET", path, headers)
    result = json.loads(body) if status == 200 else {}
    if result.get("status") != "assigned":
        raise WireError(f"http {status}")
    return str(result["registrationState"]["assignedHub"])


async def https_register_alone(fleet: Fleet, number: int, target: Target) -> str:
    """Register one device over a TLS connection of its own; answers its assigned hub."""
    connection = Connection(target)
    try:
        return await https_register(fleet, number, connection)
    finally:
        connection.close()


async def connect_mqtt_device(
    fleet: Fleet, registration_id: str, target: Target, keep_alive: int = 60
) -> MqttClient:
    """A device's MQTT connection, accepted and subscribed to the response topics."""
    reader, writer = await asyncio.open_connection(
        target.host, target.mqtt_port, ssl=target.context
    )
    client = MqttClient(reader, writer)
    try:
        client.send(
            mqtt.Connect(
                client_id=registration_id,
                username=f"{fleet.id_scope}/registrations/{registration_id}/api-version=1",
                password=fleet.token(registration_id).encode(),
                keep_alive=keep_alive,
            )
        )
        connack = await client.packet()
        if not isinstance(connack, mqtt.ConnAck) or connack.return_code:
            raise WireError("connack refused")
        client.send(mqtt.Subscribe(1, (("$dps/registrations/res/#", 1),)))
        await client.packet()
    except BaseException:
        writer.close()
        raise
    return client


async def mqtt_register(fleet: Fleet, number: int, target: Target) -> str:
    """One registration over MQTT on a connection of its own; answers the hub it was assigned."""
    registration_id = fleet.registration_id(number)
    client = await connect_mqtt_device(fleet, registration_id, target)
    try:
        client.publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=1", fleet.body(registration_id)
        )
        status, retry, body = await client.response()
        while status == 202:
            await asyncio.sleep(retry or 1)
            topic = (
                "$dps/registrations/GET/iotdps-get-operationstatus/"
                f"?$rid=2&operationId={body['operationId']}"
            )
            client.publish(topic, b" ")
            status, retry, body = await client.response()
        if status != 200 or body.get("status") != "assigned":
            raise WireError(f"mqtt {status}")
        client.send(mqtt.Disconnect())
        return str(body["registrationState"]["assignedHub"])
    finally:
        client.writer.close()


async def _amqp_register(fleet: Fleet, number: int, target: Target) -> None:
    registration_id = fleet.registration_id(number)
    reader, writer = await asyncio.open_connection(
        target.host, target.amqp_port, ssl=target.context
    )
    client = AmqpClient(reader, writer)
    try:
        await client.connect(
            f"{fleet.id_scope}/registrations/{registration_id}", fleet.token(registration_id)
        )
        register = {"iotdps-operation-type": "iotdps-register"}
        retry, body = await client.request(register, fleet.body(registration_id))
        while body.get("status") == "assigning":
            await asyncio.sleep(retry or 1)
            poll = {
                "iotdps-operation-type": "iotdps-get-operationstatus",
                "iotdps-operation-id": body["operationId"],
            }
            retry, body = await client.request(poll, b"")
        if body.get("status") != "assigned":
            raise WireError(f"amqp {body.get('status')}")
        await client.close()
    finally:
        writer.close()


async def run_scenario(
    scenario: str,
    target: Target,
    fleet: Fleet,
    devices: range,
    *,
    concurrency: int,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Samples:
    """Register `devices`; closed loop with `concurrency` in flight, or open at `rate`/s."""
    samples = Samples()
    numbers = iter(devices)

    async def one(number: int, connection: Connection | None) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(DEVICE_TIMEOUT_SECONDS):
                if scenario == "mqtt-new-connection":
                    await mqtt_register(fleet, number, target)
                elif scenario == "amqp-new-connection":
                    await _amqp_register(fleet, number, target)
                elif connection is not None:
                    await https_register(fleet, number, connection)
                else:
                    await https_register_alone(fleet, number, target)
            samples.latencies.append(time.perf_counter() - started)
        except (WireError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError,
                ssl.SSLError, mqtt.ProtocolError, DecodeError) as error:  # fmt: skip
            samples.errors[
                str(error) if isinstance(error, WireError) else type(error).__name__
            ] += 1
            if connection is not None:
                connection.close()
        if progress is not None:
            progress(1)

    began = time.perf_counter()
    if rate is None:

        async def slot() -> None:
            connection = Connection(target) if scenario == "https-keepalive" else None
            for number in numbers:
                await one(number, connection)
            if connection is not None:
                connection.close()

        await asyncio.gather(*(slot() for _ in range(concurrency)))
    else:
        await _open_loop(numbers, rate, concurrency, target, scenario, one)
    samples.elapsed = time.perf_counter() - began
    return samples


async def _open_loop(
    numbers: Iterator[int],
    rate: float,
    concurrency: int,
    target: Target,
    scenario: str,
    one: Callable[[int, Connection | None], Awaitable[None]],
) -> None:
    """Devices arrive every 1/rate s. Kept-alive scenarios share a pool of connections."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(Connection(target))
    running: set[asyncio.Task[None]] = set()

    async def arrive(number: int) -> None:
        if scenario != "https-keepalive":
            await one(number, None)
            return
        connection = await pool.get()
        try:
            await one(number, connection)
        finally:
            pool.put_nowait(connection)

    start = time.perf_counter()
    for index, number in enumerate(numbers):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(arrive(number))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    while not pool.empty():
        with contextlib.suppress(asyncio.QueueEmpty):
            pool.get_nowait().close()
