"""Stage 5 of datasets -> extract -> cache -> heads -> runs: training from a cache, metrics, run folders."""
