"""The run's curves as inline SVG: reward, entropy, in-group diversity and completion length.

Drawn here in Python so the page needs no plotting library; every text is escaped. Each point
carries ``data-step`` (clicking it in the page shows that step's trajectories) and a ``<title>``
tooltip.

Example:
    >>> rows = [{"kind": "train", "step": s, "reward/mean": s / 4} for s in range(1, 5)]
    >>> charts = run_charts(rows)
    >>> [c.title for c in charts]
    ['reward']
    >>> charts[0].svg.startswith("<svg") and 'data-step="4"' in charts[0].svg
    True
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Chart", "line_chart", "run_charts"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
_MAX_MARKERS = 400


@dataclass(frozen=True)
class Chart:
    """One drawn chart: its title, the metric keys it plots and the SVG markup."""

    title: str
    keys: tuple[str, ...]
    svg: str


def _points(rows: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    out = []
    for r in rows:
        v = r.get(key)
        s = r.get("step")
        if (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and isinstance(s, int | float)
        ):
            out.append((float(s), float(v)))
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    width: int = 380,
    plot_height: int = 130,
) -> str:
    """An SVG line chart of ``(label, [(step, value), ...])`` series (escaped, self-contained).

    ``plot_height`` is the height of the plot area; the legend (a line per series) adds to it.
    """
    pad_l, pad_r, pad_t, pad_b = 52, 12, 26, 28 + 13 * max(1, len(series))
    height = pad_t + plot_height + pad_b
    pts = [p for _, s in series for p in s]
    xs = [p[0] for p in pts] or [0.0, 1.0]
    ys = [p[1] for p in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return pad_t + (1 - (y - y0) / (y1 - y0)) * h

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
        f'<text x="{pad_l}" y="16" class="chart-title">{e(title)}</text>',
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" class="axis"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" class="axis"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" class="tick" text-anchor="end">{_fmt(y1)}</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + h}" class="tick" text-anchor="end">{_fmt(y0)}</text>',
        f'<text x="{pad_l}" y="{pad_t + h + 14}" class="tick">{_fmt(x0)}</text>',
        f'<text x="{pad_l + w}" y="{pad_t + h + 14}" class="tick" '
        f'text-anchor="end">{_fmt(x1)}</text>',
        f'<text x="{pad_l + w / 2:.1f}" y="{pad_t + h + 14}" class="tick" '
        'text-anchor="middle">step</text>',
    ]
    if not pts:
        parts.append(
            f'<text x="{pad_l + w / 2:.1f}" y="{pad_t + h / 2:.1f}" class="tick" '
            'text-anchor="middle">no data</text>'
        )
    legend_x = pad_l
    for i, (label, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if s:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>'
            )
            if len(s) <= _MAX_MARKERS:
                for x, y in s:
                    parts.append(
                        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{color}" '
                        f'class="pt" data-step="{int(x)}"><title>{e(label)} @ step {int(x)}: '
                        f"{_fmt(y)}</title></circle>"
                    )
        legend_y = pad_t + h + 34 + 13 * i
        lx = legend_x
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 8}" width="10" height="3" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{legend_y - 4}" class="legend">{e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _reward_keys(keys: set[str]) -> list[str]:
    """``reward/mean`` and ``eval/reward_mean`` first, then per-env variants of them."""
    base = [k for k in ("reward/mean", "eval/reward_mean") if k in keys]
    extra = sorted(
        k
        for k in keys
        if k not in base
        and (
            k.endswith(("/reward/mean", "/reward_mean"))
            or k.startswith(("reward/mean/", "eval/reward_mean/"))
        )
    )
    return base + extra


def run_charts(rows: Sequence[dict[str, Any]]) -> list[Chart]:
    """The charts of a run's metrics rows; a chart with no data at all is left out."""
    train = [r for r in rows if r.get("kind", "train") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    keys = {k for r in rows for k in r}
    specs: list[tuple[str, list[str]]] = [
        ("reward", _reward_keys(keys)),
        ("token entropy", ["entropy", "entropy/sampled_nll"]),
        (
            "in-group diversity and signal",
            [
                "diversity/pairwise_similarity",
                "diversity/distinct_2",
                "diversity/collapsed_groups_frac",
                "groups/zero_variance_frac",
            ],
        ),
        ("completion tokens per episode", ["completion/tokens_mean"]),
        (
            "failures",
            ["episodes/failed", "groups/judge_error", "completion/cut_by_length_frac"],
        ),
    ]
    charts = []
    for title, chart_keys in specs:
        series = []
        for key in chart_keys:
            source = evals if key.startswith("eval/") else train
            pts = _points(source, key)
            if pts:
                series.append((key, pts))
        if series:
            charts.append(Chart(title, tuple(k for k, _ in series), line_chart(title, series)))
    return charts
