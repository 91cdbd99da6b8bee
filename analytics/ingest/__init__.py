"""The write side of a scan: a registry snapshot turned into rows idempotently, the digests already
stored, and what ingest keeps current in the same transaction: maintained figures, layer chains and
trend points."""
