"""The benchmark's scenario and allocation names, apart so the CLI names them without loading
the generator."""

SCENARIOS = ("https-keepalive", "https-new-tls", "mqtt-new-connection", "amqp-new-connection")
ALLOCATIONS = ("hashed", "route", "allocator", "webhook")
