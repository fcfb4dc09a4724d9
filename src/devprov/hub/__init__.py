"""devprov's built-in IoT hub: identities, twins, methods and telemetry."""
