"""One module per command family: what each ``nnback`` command does, without the CLI."""
