"""Every read: scopes, dedup summaries, image and layer figures, content, partners, lineage, trends,
what-if.

Selectors return querysets or frozen dataclasses and never write. They are set-based SQL over indexed
columns and the figures ingest maintains; none issues a query per image (`partners` walks holdings in
batched ranges, each range one statement)."""
