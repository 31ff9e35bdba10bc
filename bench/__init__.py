"""Benchmarks (DESIGN §8): each prints one JSON object; see docs/benchmarks.md."""
