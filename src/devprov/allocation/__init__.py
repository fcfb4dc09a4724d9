"""Choosing the IoT hub for a device: built-in policies and the custom allocation webhook."""
