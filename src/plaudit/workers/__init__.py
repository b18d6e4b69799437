"""Background work: in-process in the embedded mode."""
