"""Adapters every layer may use that hold no Django model: secrets encryption, the log context, and
the Redis-backed politeness gate and metric counters that every worker process shares, callers' JSON
parsed with a bound on nesting, and the web's statement timeout."""
