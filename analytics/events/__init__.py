"""Registry events: what registries announce (pushes, deletes, mounts, pulls), received into a durable
inbox and applied in order per repository, so figures stay current between scans."""
