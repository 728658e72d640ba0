"""The `triage` command line: one typer app whose commands are thin calls into the packages."""
