"""The tests' own pipeline (see tests/pipeline/README.md)."""
