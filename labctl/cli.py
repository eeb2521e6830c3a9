"""labctl's entry point (pyproject: labctl.cli:main); the commands are in labctl.commands."""

from labctl.commands.app import cli, main

__all__ = ["cli", "main"]
