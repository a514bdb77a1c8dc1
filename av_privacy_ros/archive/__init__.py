"""
Anonymize whole bag archives on a Ray cluster: ``anonymize_archive INPUT_DIR OUTPUT_DIR``.

discovery finds the bags, manifest records what finished, actors run ``anonymize_bag`` one bag
per call, scheduler hands bags to workers and retries, report and progress tell the user.
"""

from .runner import run_archive

__all__ = ['run_archive']
