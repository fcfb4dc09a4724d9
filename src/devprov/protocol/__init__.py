"""Sans-I/O protocol code: DPS message shapes (MQTT comes next); bytes and dicts in, no sockets."""
