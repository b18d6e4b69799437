"""Use cases. Each service method owns its transaction; API, CLI and workers call these."""
