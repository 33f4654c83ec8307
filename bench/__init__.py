"""Benchmarks (`python -m bench.overhead`, `bench.batching`, `bench.gpu`); never timed tests."""
