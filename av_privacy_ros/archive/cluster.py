"""Connect to Ray (a local cluster by default) and size the workers to the cluster."""

from __future__ import annotations

from dataclasses import dataclass
import math
import signal
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence


def ray_module() -> Any:
    """Return the ``ray`` module, or raise a ValueError that says how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is an install requirement
        raise ValueError('anonymize_archive needs Ray: pip install ray') from exc
    return ray


def connect(address: Optional[str]) -> bool:
    """
    Connect to Ray; return True when this call started it (and must shut it down).

    Without ``address`` a local cluster is started on this machine (no dashboard); with
    ``auto`` or ``ray://host:port`` the existing cluster is joined.  When Ray is already
    initialized in this process (a notebook, the tests) that connection is used.
    """
    ray = ray_module()
    if ray.is_initialized():
        return False
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(include_dashboard=False, log_to_driver=True)
    if callable(previous):
        # ray.init installs its own SIGTERM handler (exit at once); keep the caller's, which
        # stops the workers and removes their staging folders first.
        signal.signal(signal.SIGTERM, previous)
    return True


def disconnect(started: bool) -> None:
    """Shut Ray down when :func:`connect` started it."""
    if started:
        ray_module().shutdown()


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start and what each asks of the cluster."""

    workers: int
    cpus: int
    """CPUs each worker reserves; also its onnxruntime and OpenCV thread count."""
    gpus: float

    def describe(self) -> str:
        """Return one line for the user."""
        text = '%d worker(s), %d CPU thread(s) each' % (self.workers, self.cpus)
        if self.gpus:
            text += ', %g GPU each' % self.gpus
        return text


def plan_workers(resources: Dict[str, float], nodes: Sequence[Mapping[str, float]], bags: int,
                 num_workers: Optional[int], gpus_per_worker: float) -> WorkerPlan:
    """
    Size the workers: never more than there are bags, never more threads than cores.

    ``resources`` is ``ray.cluster_resources()``; ``nodes`` holds the resources of each live
    node (:func:`node_resources`): a worker cannot span nodes, so it asks for no more CPUs than
    the largest node that has the GPUs it needs.  Defaults: one single-threaded worker per CPU,
    or one worker per ``gpus_per_worker`` GPUs when that is given.

    :raises ValueError: for a negative or zero worker count, or GPUs the cluster does not have
        (in total, or on any one node): such a worker could never start.
    """
    total_cpus = max(1, int(resources.get('CPU', 1)))
    total_gpus = float(resources.get('GPU', 0.0))
    if gpus_per_worker < 0:
        raise ValueError('--gpus-per-worker must be >= 0, got %g' % gpus_per_worker)
    if gpus_per_worker > 0 and total_gpus < gpus_per_worker:
        raise ValueError('--gpus-per-worker %g asks for GPUs, but the Ray cluster has %g'
                         % (gpus_per_worker, total_gpus))
    hosts = [node for node in nodes if float(node.get('GPU', 0.0)) >= gpus_per_worker]
    if nodes and not hosts:
        raise ValueError('--gpus-per-worker %g: no node of the Ray cluster has that many GPUs '
                         '(the most on one node is %g); a worker cannot span nodes'
                         % (gpus_per_worker, max(float(n.get('GPU', 0.0)) for n in nodes)))
    node_cpus = max([int(node.get('CPU', 0)) for node in hosts] or [total_cpus])
    if num_workers is not None and num_workers < 1:
        raise ValueError('--num-workers must be >= 1, got %d' % num_workers)
    if num_workers is None:
        if gpus_per_worker > 0:
            num_workers = max(1, int(math.floor(total_gpus / gpus_per_worker)))
        else:
            num_workers = total_cpus
    workers = max(1, min(num_workers, bags))
    cpus = max(1, min(total_cpus // workers, node_cpus))
    return WorkerPlan(workers=workers, cpus=cpus, gpus=float(gpus_per_worker))


def node_resources() -> List[Dict[str, float]]:
    """Return the resources (``CPU``, ``GPU``, ...) of each live node of the connected cluster."""
    ray = ray_module()
    return [dict(node.get('Resources', {})) for node in ray.nodes() if node.get('Alive')]
