"""The human review queue: case rules (four eyes, leases) and the audit chain, engine-free."""
