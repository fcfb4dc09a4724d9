"""Checking a device's proof of identity: symmetric-key SAS tokens (X.509 and TPM come next)."""
