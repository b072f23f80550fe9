"""The run folder: atomic writes, checkpoints, saved models, logs and the lock (no training code)."""
