"""The Celery side and the sources: `tasks` (thin Celery tasks calling `analytics.scans` and
`analytics.engines`) and the two sources with no Django import, `registry` (the registry client and
its crawl) and `engine` (the Docker Engine reader)."""
