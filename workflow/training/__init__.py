"""The training loop and what it leans on: runtime, checkpoints, logging, study jobs, provenance."""
