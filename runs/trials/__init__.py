"""Many trials on one cache: the executor under tables, compare and sweeps, and its worker processes."""
