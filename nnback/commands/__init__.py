"""The commands behind the CLI, one module per command family; each returns text or data."""
