"""The Django app, in layers (docs/design.md section 1): entry points (`api`, `web`, `admin`,
`management`) call `scans`, `engines` and `ops`; those call `ingest` and `registries` (writes) and
`selectors` (every read); all of them stand on `models`, `errors` and `infra`."""
