"""`python -m services.cli`: the same as the installed `ho` command."""

from services.cli.main import run

run()
