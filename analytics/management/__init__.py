"""`manage.py` commands (`commands/`): scan, report, registry, lineage, whatif, demo_user. Each parses
its arguments and calls a service or a selector."""
