"""The ``kitaru`` command line."""

from kitaru.cli._app import app, main

__all__ = ["app", "main"]
