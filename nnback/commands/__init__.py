"""One module per command family: argument-level glue between the CLI and the package."""
