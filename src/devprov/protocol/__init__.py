"""Sans-I/O protocol code: MQTT 3.1.1, DPS's message shapes and topics; no sockets."""
