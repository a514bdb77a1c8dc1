"""Worker sizing of the archive tool against the nodes of a Ray cluster (pure, no Ray)."""

from __future__ import annotations

from typing import Dict, List, Optional

from av_privacy_ros.archive.cluster import plan_workers
import pytest


def _cluster(nodes: List[Dict[str, float]]) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            total[key] = total.get(key, 0.0) + value
    return total


CPU_16 = {'CPU': 16.0}
GPU_4CPU = {'CPU': 4.0, 'GPU': 1.0}
GPU2_8CPU = {'CPU': 8.0, 'GPU': 2.0}


@pytest.mark.parametrize('nodes, bags, num_workers, gpus, expected', [
    # One worker per CPU by default, never more workers than bags.
    ([CPU_16], 100, None, 0.0, (16, 1, 0.0)),
    ([CPU_16], 3, None, 0.0, (3, 5, 0.0)),
    # Threads per worker never exceed the largest node: a worker cannot span nodes.
    ([CPU_16, CPU_16], 100, 1, 0.0, (1, 16, 0.0)),
    # A GPU worker asks for no more CPUs than the GPU node has (a CPU-only node is larger).
    ([CPU_16, GPU_4CPU], 10, None, 1.0, (1, 4, 1.0)),
    ([CPU_16, GPU2_8CPU], 10, None, 1.0, (2, 8, 1.0)),
    ([CPU_16, GPU2_8CPU], 10, None, 0.5, (4, 6, 0.5)),
])
def test_workers_fit_on_one_node(nodes: List[Dict[str, float]], bags: int,
                                 num_workers: Optional[int], gpus: float,
                                 expected: tuple) -> None:
    """Every planned worker fits on some node, so Ray can start it."""
    plan = plan_workers(_cluster(nodes), nodes, bags, num_workers, gpus)
    assert (plan.workers, plan.cpus, plan.gpus) == expected
    assert any(node.get('CPU', 0.0) >= plan.cpus and node.get('GPU', 0.0) >= plan.gpus
               for node in nodes)


@pytest.mark.parametrize('nodes, num_workers, gpus, message', [
    ([CPU_16], None, 1.0, 'the Ray cluster has 0'),
    # Two GPUs in the cluster, but one per node: a 2-GPU worker would wait forever.
    ([GPU_4CPU, GPU_4CPU], None, 2.0, 'no node of the Ray cluster has that many GPUs'),
    ([CPU_16], 0, 0.0, '--num-workers must be >= 1'),
    ([CPU_16], None, -1.0, '--gpus-per-worker must be >= 0'),
])
def test_impossible_worker_requests_are_refused(nodes: List[Dict[str, float]],
                                                num_workers: Optional[int], gpus: float,
                                                message: str) -> None:
    """A worker no node could hold is an error before anything starts, not an endless wait."""
    with pytest.raises(ValueError, match=message):
        plan_workers(_cluster(nodes), nodes, 10, num_workers, gpus)
