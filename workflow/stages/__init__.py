"""One module per pipeline stage, each with main() and --help; dvc.yaml runs them in order."""
