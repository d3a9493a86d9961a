"""The soak's PNG, drawn from its JSON summary: RSS, open descriptors and cumulative writes
over time, with the restarts marked and the steady segments shaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine; before pyplot

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

RESTART_COLOURS = {"SIGTERM": "tab:orange", "SIGKILL": "tab:red"}


def _points(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _marks(ax: Axes, summary: Mapping[str, Any]) -> None:
    for seg in summary["steady_segments"]:
        ax.axvspan(seg["from_min"], seg["to_min"], color="tab:green", alpha=0.07, lw=0)
    for r in summary["restarts"]:
        ax.axvline(r["at_minutes"], color=RESTART_COLOURS.get(r["signal"], "grey"), ls="--", lw=1)
    if summary.get("self_test"):  # the deliberate slice deletion
        ax.axvline(summary["self_test"]["at_minutes"], color="tab:purple", ls=":", lw=1.2)
    ax.axvline(0.0, color="grey", lw=0.8)  # the fleet synced; the chaos begins
    ax.grid(alpha=0.3)


def _by_generation(
    ax: Axes, minutes: Sequence[float], values: Sequence[float | None], gens: Sequence[int | None]
) -> None:
    for gen in sorted({g for g in gens if g is not None}):
        picked = [v if g == gen else None for v, g in zip(values, gens, strict=True)]
        xs, ys = _points(minutes, picked)
        ax.plot(xs, ys, lw=1.2, color="tab:blue")


def _load(ax: Axes, summary: Mapping[str, Any], minutes: Sequence[float]) -> None:
    """The machine's busy cores, those used outside the soak, and the operator's failed
    polls with no fault injected: the box is shared, and its load explains the failures."""
    data = summary["series"]
    for key, label, colour in (
        ("machine_cores", "machine busy cores", "tab:grey"),
        ("outside_cores", "of which outside the soak", "tab:brown"),
    ):
        xs, ys = _points(minutes, data.get(key) or [None] * len(minutes))
        ax.plot(xs, ys, lw=0.9, color=colour, label=label)
    ax.set_ylabel("busy cores")
    ax.set_xlabel("minutes since the fleet synced")
    failures = summary.get("unprovoked_failures_per_minute")
    if failures and failures["counts"]:
        twin = ax.twinx()
        start = failures["from_minute"]
        edges = [start + k for k in range(len(failures["counts"]) + 1)]
        twin.stairs(failures["counts"], edges, color="tab:red", alpha=0.6, label="failed polls")
        twin.set_ylabel("failed polls / min, no fault injected", color="tab:red", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)


def plot(summary: Mapping[str, Any], path: Path) -> None:
    data = summary["series"]
    minutes: list[float] = data["minutes"]
    gens: list[int | None] = data["generation"]
    fig, (rss, fds, writes, load) = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    settings = summary["settings"]
    fig.suptitle(
        f"Soak: {settings['services']:,} DirectServices x {settings['instances']} instances "
        f"@ {settings['interval']:g} s, {summary['minutes']:.0f} min, "
        f"endpoint loss {summary['loss']['total']}"
    )
    _by_generation(rss, minutes, data["rss_mib"], gens)
    trend = summary["rss_kib"]
    rss.set_ylabel("operator RSS (MiB)")
    rss.set_title(
        f"steady slope {trend['slope_per_min']:.1f} KiB/min, noise {trend['noise']:.0f} KiB "
        "(shaded: steady; dashed: restart, orange SIGTERM, red SIGKILL)",
        fontsize=9,
    )
    _by_generation(fds, minutes, data["fds"], gens)
    fds.set_ylabel("open fds")
    # From the sync on: the sync's own writes would dwarf what the chaos costs.
    xs, ys = _points(minutes, data["writes"])
    after = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= 0]
    if after:
        base = after[0][1]
        writes.plot([x for x, _ in after], [y - base for _, y in after], lw=1.2, color="tab:purple")
    writes.set_ylabel("operator writes since sync")
    writes.set_title(
        f"{summary['writes']['operator_after_sync']:,} writes after the sync "
        f"({summary['writes']['operator_per_minute']}/min)",
        fontsize=9,
    )
    _load(load, summary, minutes)
    for ax in (rss, fds, writes, load):
        _marks(ax, summary)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
