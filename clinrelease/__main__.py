"""`python -m clinrelease` runs the command line."""

from clinrelease.cli import app

app(prog_name="clinrelease")
