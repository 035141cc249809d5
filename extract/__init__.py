"""Stage 2 of datasets -> extract -> cache -> heads -> runs: run the frozen encoders once, write the cache."""
