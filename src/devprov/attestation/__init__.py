"""Checking a device's proof of identity: SAS tokens, X.509 chains, TPM challenges."""
