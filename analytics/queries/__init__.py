"""Selectors (and the two small services that maintain their inputs) answering issue 4's questions.

Each module is set-based SQL over indexed columns: nothing loops over images in Python.
"""
