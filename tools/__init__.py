"""Conversion, benchmark and evaluation scripts (run from the repo root: ``python -m tools.X``)."""
