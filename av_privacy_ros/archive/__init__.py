"""Anonymize whole bag archives on a Ray cluster."""
