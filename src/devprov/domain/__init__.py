"""Pure data and rules of provisioning: no I/O happens in this package."""
