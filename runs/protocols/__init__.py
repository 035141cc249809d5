"""Evaluation protocols built from trials: the paper's tables 3-7 and the comparison of heads."""
