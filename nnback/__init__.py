"""nnback: small, fast, dependable neural-network training in NumPy."""

__version__ = "0.1.0"
