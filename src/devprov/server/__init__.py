"""The network edge: the aiohttp app (device and service APIs), the MQTT listeners, TLS."""
