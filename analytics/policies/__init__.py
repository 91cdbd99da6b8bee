"""Cleanup policies as people already write them, previewed against what Layerlens recorded.

- `document`: the policy's text read as bounded JSON and walked field by field (errors name a line or a
  JSON path);
- `patterns`: GitLab's RE2 regexes (refused when unsafe, matched under a timeout), ECR's wildcards,
  Harbor's doublestar patterns;
- `ecr`, `gitlab`, `harbor`, `layerlens`: one format each, parsed and evaluated with its documented
  semantics;
- `rows`: what a policy is evaluated over, as SQL over the scope (images and tags with push and pull
  times, and their source; tag names matched in Python, sent back as bits); the formats' selections are
  statements over it, returning only what they select and the counts the answer needs;
- `preview`: parse (format given or guessed), refuse what would be guessed (pulls not counted), select,
  price with `selectors.whatif.deletion_impact`.

- `saved`, `evaluate`: policies kept per registry (`CleanupPolicy`, parsed before they are saved) and
  their series (`PolicyEvaluation`), evaluated by the worker after the registry changes.

A preview reads only: it deletes nothing and stores nothing; `saved` and `evaluate` write their own rows.
"""
