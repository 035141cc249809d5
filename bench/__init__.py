"""Benchmarks whose figures go in docs/benchmarks.md; run each from the project root as a module: `python -m bench.<name>`."""
