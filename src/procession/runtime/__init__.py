"""Running an App against a store: workers, clock, the embedded runtime."""
