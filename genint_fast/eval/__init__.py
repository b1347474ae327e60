"""Evaluation and analysis tools (SPEC sections 7-8)."""
