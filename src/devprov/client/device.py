"""A device client for the HTTPS runtime API: register with a symmetric key, an X.509
certificate or a TPM, and a payload."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from devprov.attestation.sas import build_sas
from devprov.domain.keys import derive_device_key

if TYPE_CHECKING:
    from devprov.client.tpm import TpmDevice

API_VERSION = "2021-06-01"
CSR_API_VERSION = "2025-07-01-preview"  # the first that defines `csr` and the issued chain


class RegistrationFailed(Exception):
    """The service refused the registration or it ended `failed`; `body` is what it answered."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"registration failed ({status}): {body}")
        self.status = status
        self.body = body


@dataclass
class DeviceClient:
    host: str
    id_scope: str
    port: int = 443
    ca_file: str | None = None
    poll_limit: int = 60
    cert_file: str | None = None  # X.509: the device's certificate chain (PEM), and its key
    key_file: str | None = None

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    async def register(
        self,
        registration_id: str,
        *,
        symmetric_key: str | None = None,
        group_key: str | None = None,
        payload: Any = None,
        csr: str | None = None,
        tpm: TpmDevice | None = None,
    ) -> dict[str, Any]:
        """Register and wait for the result; returns `registrationState` once `assigned`.

        Pass the device's own key, or the enrollment group's key to derive it. With `csr`
        (base64 DER PKCS#10, CN = the registration id), an enrollment that names a credential
        policy answers `issuedCertificateChain` (base64 DER, leaf first)."""
        key = symmetric_key or (
            derive_device_key(group_key, registration_id) if group_key else None
        )
        if key is None and not self.cert_file and tpm is None:
            raise ValueError("a symmetric key, a group key, a certificate or a TPM is required")
        resource = f"{self.id_scope}/registrations/{registration_id}"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
        }
        if key is not None:
            headers["Authorization"] = build_sas(resource, key, key_name="registration")
        base = f"https://{self.host}:{self.port}/{quote(self.id_scope)}/registrations/{quote(registration_id)}"
        body: dict[str, Any] = {"registrationId": registration_id}
        if payload is not None:
            body["payload"] = payload
        api_version = API_VERSION
        if csr is not None:
            body["csr"] = csr
            api_version = CSR_API_VERSION
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl())) as http:
            url = f"{base}/register?api-version={api_version}"
            if tpm is not None:
                ek, srk = await asyncio.to_thread(tpm.public_keys)
                body["tpm"] = {
                    "endorsementKey": base64.b64encode(ek).decode(),
                    "storageRootKey": base64.b64encode(srk).decode(),
                }
                async with http.put(url, json=body, headers=headers) as response:
                    status, answer = response.status, await _json(response)
                blob = answer.get("authenticationKey") if isinstance(answer, dict) else None
                if status != 401 or not isinstance(blob, str):
                    raise RegistrationFailed(status, answer)
                await asyncio.to_thread(tpm.activate, base64.b64decode(blob))
                headers["Authorization"] = await asyncio.to_thread(_tpm_sas, tpm, resource)
            async with http.put(url, json=body, headers=headers) as response:
                status, answer, retry = response.status, await _json(response), _retry(response)
            for _ in range(self.poll_limit):
                if (
                    status == 202
                    and isinstance(answer, dict)
                    and answer.get("status") == "assigning"
                ):
                    await asyncio.sleep(retry)
                    operation = quote(answer["operationId"])
                    url = f"{base}/operations/{operation}?api-version={api_version}"
                    async with http.get(url, headers=headers) as response:
                        status, answer, retry = (
                            response.status,
                            await _json(response),
                            _retry(response),
                        )
                    continue
                break
        if status == 200 and isinstance(answer, dict) and answer.get("status") == "assigned":
            state: dict[str, Any] = answer["registrationState"]
            return state
        raise RegistrationFailed(status, answer)


async def _json(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return await response.text()


def _retry(response: aiohttp.ClientResponse) -> float:
    try:
        return max(0.1, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _tpm_sas(tpm: TpmDevice, resource: str, ttl_seconds: int = 3600) -> str:
    """A SAS token signed inside the TPM, as `build_sas` signs with a key."""
    expiry = int(time.time()) + ttl_seconds
    encoded = quote(resource, safe="")
    signature = base64.b64encode(tpm.hmac(f"{encoded}\n{expiry}".encode())).decode()
    return (
        f"SharedAccessSignature sr={encoded}&sig={quote(signature, safe='')}&se={expiry}"
        "&skn=registration"
    )
