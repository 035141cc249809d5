"""Sweeps: the Optuna study, its storage, the workers that claim trials, the summary and its pictures."""
