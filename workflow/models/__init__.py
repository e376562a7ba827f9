"""The model zoo (hub id or shipped config to model), LoRA target resolution and batched prediction."""
