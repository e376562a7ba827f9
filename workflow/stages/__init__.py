"""The pipeline's stages, one module each, run as `python -m workflow.stages.<name>`."""
import sys

# Run that way, a stage ties itself to the engine that started it (workflow/core/lifetime.py) here, before
# its own imports: they take seconds (torch), and an engine killed meanwhile would go unnoticed.
# Python sets argv[0] to "-m" while it locates the module; an import from anywhere else does not.
if sys.argv[:1] == ["-m"]:
    from workflow.core.lifetime import tie_to_engine

    tie_to_engine()
