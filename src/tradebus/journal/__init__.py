"""The durable journal under the bus: checksummed records in append-only segment files."""
