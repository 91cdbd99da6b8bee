"""Test support: real services (PostgreSQL, Redis, registry, dockerd) and image builders."""
