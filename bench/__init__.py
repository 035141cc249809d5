"""Benchmarks whose figures go in README; run each from the project root as a module: `python -m bench.<name>`."""
