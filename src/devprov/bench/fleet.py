"""Virtual devices of one symmetric-key enrollment group: ids, derived keys, SAS tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

API_VERSION = "2019-03-31"


@dataclass(frozen=True)
class Fleet:
    id_scope: str
    group_key: str
    prefix: str

    def registration_id(self, number: int) -> str:
        return f"{self.prefix}-{number:08d}"

    def token(self, registration_id: str) -> str:
        """The SAS token a device signs with its derived key (as the Node SDK writes it)."""
        device_key = hmac.new(
            base64.b64decode(self.group_key), registration_id.encode(), hashlib.sha256
        ).digest()
        resource = f"{self.id_scope}/registrations/{registration_id}"
        expiry = int(time.time()) + 3600
        signature = base64.b64encode(
            hmac.new(device_key, f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
        ).decode()
        return (
            f"SharedAccessSignature sr={resource}&sig={quote(signature, safe='')}"
            f"&se={expiry}&skn=registration"
        )

    def register_path(self, registration_id: str) -> str:
        return (
            f"/{self.id_scope}/registrations/{registration_id}/register?api-version={API_VERSION}"
        )

    def body(self, registration_id: str) -> bytes:
        payload = {"registrationId": registration_id, "payload": {"modelId": "dtmi:bench;1"}}
        return json.dumps(payload).encode()
