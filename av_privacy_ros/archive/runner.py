"""``run_archive``: anonymize every bag of a folder tree into a mirrored output tree."""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any, Callable, Mapping, Optional

from .actors import CrashOnce
from .cluster import connect, disconnect, node_resources, plan_workers, ray_module
from .discovery import check_folders, find_bags
from .manifest import Manifest
from .progress import ArchiveProgress
from .report import ArchiveReport
from .scheduler import Job, Scheduler

LogCallback = Callable[[str], None]


def run_archive(input_dir: Any, output_dir: Any, *, params: Optional[Mapping[str, Any]] = None,
                bag_options: Optional[Mapping[str, Any]] = None, force: bool = False,
                address: Optional[str] = None, num_workers: Optional[int] = None,
                gpus_per_worker: float = 0.0, retries: int = 2, show_progress: bool = False,
                log: Optional[LogCallback] = None,
                crash_once: Optional[CrashOnce] = None) -> ArchiveReport:
    """
    Anonymize every bag under ``input_dir`` into the same relative path under ``output_dir``.

    Each bag goes through :func:`av_privacy_ros.bag.anonymize_bag` with the parameter
    overrides ``params`` and its keyword options ``bag_options`` (``storage``,
    ``image_topics``, ``write_masks``, ...), one bag per call on a Ray worker.  Bags that the
    manifest in ``output_dir`` records as done from the same input (size and mtime) with a
    valid output are skipped.  An existing output is replaced only when an earlier run of this
    archive wrote it, or with ``force``.  ``crash_once`` is a test-only fault injection.

    :raises ValueError: for bad folders, two inputs with one output, bad worker counts, or
        parameters the workers cannot build a detector from.
    """
    started = time.perf_counter()
    say: LogCallback = log or (lambda text: None)
    src, dst = Path(input_dir), Path(output_dir)
    check_folders(src, dst)
    if retries < 0:
        raise ValueError('--retries must be >= 0, got %d' % retries)
    from .. import params as params_mod
    try:
        params_mod.resolve(dict(params or {}))
    except ValueError as exc:
        raise ValueError('bad parameter: %s' % exc) from exc
    bags = find_bags(src)
    manifest = Manifest(dst)
    report = ArchiveReport(bags_found=len(bags))
    jobs = []
    for bag in bags:
        if manifest.is_done(bag, dst):
            report.skipped += 1
            continue
        out = dst / bag.output_relative()
        owned = force or manifest.wrote(bag) or not out.exists()
        jobs.append(Job(bag=bag, output=out, force=owned))
    say('%d bag(s) under %s: %d to do, %d done already'
        % (len(bags), src, len(jobs), report.skipped))
    if not jobs:
        report.wall_s = time.perf_counter() - started
        return report
    started_ray = connect(address)
    progress = ArchiveProgress(len(jobs), enabled=show_progress)
    try:
        ray = ray_module()
        plan = plan_workers(ray.cluster_resources(), node_resources(), len(jobs),
                            num_workers, gpus_per_worker)
        report.plan = plan.describe()
        say('Ray cluster: %s; %s' % (_resources_text(ray.cluster_resources()), report.plan))
        scheduler = Scheduler(plan=plan, params=dict(params or {}),
                              bag_options=dict(bag_options or {}), retries=retries,
                              manifest=manifest, output_dir=dst, report=report,
                              crash_once=crash_once, progress=progress)
        scheduler.run(jobs)
    finally:
        progress.close()
        manifest.compact()
        disconnect(started_ray)
    report.wall_s = time.perf_counter() - started
    return report


def _resources_text(resources: Mapping[str, float]) -> str:
    parts = ['%g CPU' % resources.get('CPU', 0)]
    if resources.get('GPU'):
        parts.append('%g GPU' % resources['GPU'])
    return ', '.join(parts)
