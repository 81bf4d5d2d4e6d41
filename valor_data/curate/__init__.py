"""Curation: measure clips (quality checks, signatures), judge them, group near-duplicates."""
