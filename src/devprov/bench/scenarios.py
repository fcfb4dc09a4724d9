"""The benchmark's scenario names (a module of its own, so the CLI names them without loading
the load generator)."""

SCENARIOS = ("https-keepalive", "https-new-tls", "mqtt-new-connection")
