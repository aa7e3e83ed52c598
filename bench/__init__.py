"""Benchmarks. Each writes a JSON result to bench/results/; none is a timed test."""
