"""Sweeps: many trials of one experiment, their journal, executors and summary."""
