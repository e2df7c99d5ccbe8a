"""The ``envkit`` command line (typer). ``envkit.cli.main:app`` is the root command."""
