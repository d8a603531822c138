"""The demo's charts: each arm's share of spend over time, and cumulative expected
conversions against the baselines; written as a PNG and a self-contained HTML page."""

from __future__ import annotations

import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jangkau.cli.demo_scoring import Scores  # noqa: E402
from jangkau.v1 import budget_pb2  # noqa: E402


def _figure(scores: Scores, campaign: budget_pb2.Campaign):  # type: ignore[no-untyped-def]
    fig, (share_ax, conv_ax) = plt.subplots(2, 1, figsize=(12, 9), constrained_layout=True)
    # numpy's datetime64 holds no zone: hours are UTC.
    days = np.array([h.replace(tzinfo=None) for h in scores.hours], dtype="datetime64[h]")
    budgets = scores.budgets.astype(float)
    # Daily sums keep the stacked areas readable over two months of hours.
    n_days = len(days) // 24
    if n_days >= 1:
        daily = budgets[: n_days * 24].reshape(n_days, 24, -1).sum(axis=1)
        x = days[: n_days * 24 : 24]
    else:
        daily, x = budgets, days
    totals = daily.sum(axis=1, keepdims=True)
    share = np.divide(daily, totals, out=np.zeros_like(daily), where=totals > 0)
    active = share.sum(axis=0) > 0
    labels = [a for a, keep in zip(scores.arm_ids, active, strict=True) if keep]
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(labels), 1)))
    share_ax.stackplot(x, share[:, active].T * 100, labels=labels, colors=colours)
    share_ax.set_ylabel("share of daily budget, %")
    share_ax.set_ylim(0, 100)
    share_ax.set_title(f"{campaign.name}: each arm's share of spend")
    share_ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    for name, series in scores.cumulative.items():
        conv_ax.plot(days, series, label=name, linewidth=2 if name == "jangkau" else 1.2)
    conv_ax.set_ylabel("cumulative expected conversions")
    conv_ax.set_title("jangkau against a uniform split and the oracle (same market, same budgets)")
    conv_ax.legend()
    conv_ax.grid(alpha=0.3)
    return fig


def write_charts(out: Path, scores: Scores, campaign: budget_pb2.Campaign) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    fig = _figure(scores, campaign)
    png = out / "demo.png"
    fig.savefig(png, dpi=110)
    svg = io.StringIO()
    fig.savefig(svg, format="svg")
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{series[-1]:,.0f}</td>"
        f"<td>{100 * series[-1] / max(scores.oracle, 1e-9):.1f}%</td></tr>"
        for name, series in scores.cumulative.items()
    )
    page = out / "demo.html"
    page.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>jangkau demo: {html.escape(campaign.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "td,th{padding:4px 12px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>{html.escape(campaign.name)}</h1>"
        "<table><tr><th>policy</th><th>expected conversions</th><th>% of oracle</th></tr>"
        f"{rows}</table>{svg.getvalue()}</body></html>"
    )
    return png, page
