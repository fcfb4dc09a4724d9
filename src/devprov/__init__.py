"""devprov: a self-hosted Device Provisioning Service, wire-compatible with Azure IoT Hub DPS."""

__version__ = "0.1.0"
