"""Commands for the user that are not pipeline stages: dry run, parameter counts."""
