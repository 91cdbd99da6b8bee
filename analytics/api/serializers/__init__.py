"""The API's response and request shapes, one module per subject: `common` (shared fields, errors,
pages), `registries`, `content`, `scans`, `insights`, `engines`. Shapes only: no serializer runs a
query; per-page extras (sizes, tags, summaries) come in through the context, computed by the view."""
