"""Registering devices: the one service transports call, and its stages."""

from devprov.registration.attest import DeviceProof
from devprov.registration.provision import OperationResult
from devprov.registration.service import RegistrationService, RegistrationSettings

__all__ = ["DeviceProof", "OperationResult", "RegistrationService", "RegistrationSettings"]
