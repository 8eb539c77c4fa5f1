"""Benchmarks: run with `make bench`; each prints its figures against a baseline of the same run."""
