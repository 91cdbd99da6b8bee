"""Every read: scopes, dedup summaries, image and layer figures, content, lineage, trends, what-if.

Selectors return querysets or frozen dataclasses and never write. They are set-based SQL over indexed
columns and the figures ingest maintains: nothing loops over images in Python."""
