"""TPM attestation over HTTPS, with a software stand-in for the TPM: challenge, replay, forgery."""

from __future__ import annotations

import base64
from typing import Any

from tests.conftest import Running
from tests.helpers import device_request
from tests.tpm_support import SoftTpmDevice


class Device(SoftTpmDevice):
    """A TPM device made of software keys, registering with this test's devprov."""

    def token(self, running: Running, key: bytes) -> str:
        return self.signed_token(running.id_scope, key)

    async def put(self, running: Running, authorization: str | None = None) -> Any:
        path = f"/{running.id_scope}/registrations/{self.registration_id}/register?api-version=1"
        return await device_request(
            running, "PUT", path, body=self.body(), authorization=authorization
        )


async def enroll(running: Running, device: Device) -> None:
    await running.service().link_hub("hub.example")
    await running.service().put_enrollment(
        {
            "registrationId": device.registration_id,
            "attestation": {
                "type": "tpm",
                "tpm": {"endorsementKey": base64.b64encode(device.ek).decode()},
            },
        }
    )


async def test_challenge_then_signed_register_then_hub_key(devprov: Running) -> None:
    device = Device()
    await enroll(devprov, device)

    status, challenge, _ = await device.put(devprov)
    assert status == 401
    assert set(challenge) == {
        "message",
        "authenticationKey",
        "unencryptedAuthenticationKey",
        "keyName",
    }
    assert challenge["keyName"] == "registration"
    key = device.open(challenge["authenticationKey"])

    token = device.token(devprov, key)
    status, body, _ = await device.put(devprov, token)

    assert status == 200, body
    state = body["registrationState"]
    assert state["status"] == "assigned"
    hub_key = device.open(state["tpm"]["authenticationKey"])
    identity = await devprov.service().call(
        "GET", f"/linkedHubs/hub.example/devices/{device.registration_id}"
    )
    assert identity["authentication"]["symmetricKey"]["primaryKey"] == (
        base64.b64encode(hub_key).decode()
    )
    operation = body["operationId"]
    path = f"/{devprov.id_scope}/registrations/{device.registration_id}/operations/{operation}"
    status, polled, _ = await device_request(
        devprov, "GET", path + "?api-version=1", authorization=token
    )
    assert (status, polled["status"]) == (200, "assigned")


async def test_replayed_token_is_refused(devprov: Running) -> None:
    device = Device()
    await enroll(devprov, device)
    _, challenge, _ = await device.put(devprov)
    token = device.token(devprov, device.open(challenge["authenticationKey"]))
    status, _, _ = await device.put(devprov, token)
    assert status == 200

    status, body, _ = await device.put(devprov, token)

    assert status == 401
    assert body["errorCode"] == 401000
    assert "already used" in body["message"]


async def test_forged_token_is_refused(devprov: Running) -> None:
    device = Device()
    await enroll(devprov, device)
    await device.put(devprov)

    status, body, _ = await device.put(devprov, device.token(devprov, b"\x01" * 32))

    assert status == 401
    assert "not valid" in body["message"]
    response, _, _ = await devprov.service().request(
        "GET", f"/registrations/{device.registration_id}"
    )
    assert response == 404


async def test_unenrolled_or_other_ek_is_refused(devprov: Running) -> None:
    device = Device()
    status, body, _ = await device.put(devprov)
    assert (status, body["errorCode"]) == (401, 401003)
    assert "No TPM enrollment" in body["message"]

    await enroll(devprov, device)
    impostor = Device()
    impostor.registration_id = device.registration_id
    status, body, _ = await impostor.put(devprov)
    assert (status, body["errorCode"]) == (401, 401003)
    assert "not the one enrolled" in body["message"]


async def test_asking_again_does_not_void_the_pending_challenge(devprov: Running) -> None:
    """Whoever knows a TPM's public EK (and any SRK) may ask for a challenge: they get the
    pending key again, wrapped for that EK, which only the TPM can open; the device's own
    challenge stays good, and its hub key is wrapped for the SRK its signed register sent."""
    device = Device()
    await enroll(devprov, device)
    _, mine, _ = await device.put(devprov)
    key = device.open(mine["authenticationKey"])

    stranger = Device()  # knows the device's EK; brings a storage key of its own
    stranger.ek, stranger.registration_id = device.ek, device.registration_id
    for asker in (stranger, device):
        status, again, _ = await asker.put(devprov)
        assert status == 401
        assert again["keyName"] == "registration"
    assert device.open(again["authenticationKey"]) == key  # the same key, rewrapped

    status, body, _ = await device.put(devprov, device.token(devprov, key))

    assert status == 200, body
    state = body["registrationState"]
    assert state["status"] == "assigned"
    device.open(state["tpm"]["authenticationKey"])  # wrapped for the device's own SRK


async def test_a_used_challenge_is_replaced_by_a_new_one(devprov: Running) -> None:
    device = Device()
    await enroll(devprov, device)
    _, first, _ = await device.put(devprov)
    key = device.open(first["authenticationKey"])
    status, _, _ = await device.put(devprov, device.token(devprov, key))
    assert status == 200

    _, second, _ = await device.put(devprov)

    assert device.open(second["authenticationKey"]) != key
