"""What serves the tests alone: pytest fixtures and the fake servers they talk to (a hostile registry,
a slow proxy, a token server). The real parts live in `harness`."""
