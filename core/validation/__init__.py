"""Validation: the validator that turns branch directories and a trunk into findings, and branch sources."""
