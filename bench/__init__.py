"""Reproducible benchmarks with the data they build; bench/README.md says how to run each and quotes
their figures."""
