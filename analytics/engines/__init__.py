"""Docker Engines beside the registries: registering one and scanning it (services), turning its
snapshot into rows (ingest), and `docker system df -v` and the fleet from what was recorded
(selectors). Engines share layers by ChainID, registries by blob digest; the two are never mixed."""
