"""Hub connectors: putting a provisioned device's identity on the hub it was assigned to."""
