"""Rate limits and quotas: the token-bucket port, its in-memory and Redis adapters, and the
RateLimit response headers."""
