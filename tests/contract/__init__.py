"""The store contract: one suite, run against every backend (STYLE rule 8)."""
