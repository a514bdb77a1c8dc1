"""Plots of the evaluation (matplotlib with the Agg backend, imported on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Sequence

from .metrics import group_rows
from .scoring import SessionResult


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_distributions(rows: Sequence[Mapping[str, Any]], key: str, label: str,
                       path: Path) -> None:
    """Save box plots of Dice and Recall grouped by ``key`` (environment or faces)."""
    plt = _pyplot()
    groups = group_rows(rows, lambda r: str(r[key]) or '-')
    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names), 4), squeeze=False)
    for ax, metric in zip(axes[0], ('dice', 'recall')):
        data = [[r[metric] for r in groups[n]] for n in names]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(['%s\n(n=%d)' % (n, len(groups[n])) for n in names])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title('%s per %s' % (metric.capitalize(), label))
        ax.set_xlabel(label)
        ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def plot_over_time(result: SessionResult, path: Path) -> None:
    """Save Dice (and Recall) per frame over the frames of one session."""
    plt = _pyplot()
    frames: List[float] = [r['frame'] for r in result.frames]
    xlabel = 'reference frame'
    if result.mode == 'stamp' and frames:
        first = frames[0]
        frames = [(f - first) / 1e9 for f in frames]
        xlabel = 'seconds since the first reference frame'
    fig, ax = plt.subplots(figsize=(8, 3))
    empty = [x for x, r in zip(frames, result.frames) if r['both_empty']]
    if empty:
        ax.plot(empty, [0.0] * len(empty), '|', color='grey', markersize=10,
                label='both empty')
    ax.plot(frames, [r['recall'] for r in result.frames], color='tab:orange', lw=0.8,
            alpha=0.7, label='Recall')
    ax.plot(frames, [r['dice'] for r in result.frames], color='tab:blue', lw=1.2,
            label='Dice')
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_title('Session %s (shift %+d)' % (result.session.name, result.shift or 0))
    ax.legend(loc='lower left')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
