"""Storage: ports (typing.Protocol) and their adapters."""
