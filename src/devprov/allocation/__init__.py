"""Choosing a device's IoT hub: the allocator seam, the built-in policies and the webhook."""
