"""devprov's own Python clients: a device client and a service API client, for others to import."""

from devprov.client.device import DeviceClient, RegistrationFailed
from devprov.client.service import ServiceClient, ServiceError

__all__ = ["DeviceClient", "RegistrationFailed", "ServiceClient", "ServiceError"]
