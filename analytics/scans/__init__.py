"""Scans: starting one (resolve the target, create, enqueue or run inline), its state machine (claim,
leases, finish, parent counters), registry and repository runs, the beat schedule and sweeper, the
registry-client factory, and the deep scan that measures layers."""
