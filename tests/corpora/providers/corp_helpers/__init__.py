"""Shared helpers of the provider corpus, imported by several DAG files (like a team's ``common`` package)."""
