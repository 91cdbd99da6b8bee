"""What operators watch: readiness (`/readyz`) and the Prometheus metrics (`/metrics`), read from
PostgreSQL, the broker and the counters workers keep in Redis."""
