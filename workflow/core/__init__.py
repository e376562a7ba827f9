"""Plumbing every stage uses: command line, errors, atomic files, process lifetime, locks."""
