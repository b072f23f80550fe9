"""Training: the loop, the run folder and its crash-safe files."""
