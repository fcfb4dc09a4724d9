"""The network edge: the aiohttp app (device runtime API, service API), TLS, the runner."""
