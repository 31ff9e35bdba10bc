"""Process managers, their effects, batches and failure policies."""
