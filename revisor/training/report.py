"""Benchmark reports: Markdown tables, a chart of Exact Match and of precision against coverage,
and the printed table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from revisor.training.metrics import SystemScore


def table(scores: Sequence[SystemScore]) -> str:
    rows = [
        "| system | n | Exact Match | BLEU-4 | unchanged | empty |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        rows.append(
            f"| {s.name} | {s.n} | {s.exact_match:.1%} | {s.bleu:.1f} | {s.unchanged:.1%} | {s.empty:.1%} |"
        )
    return "\n".join(rows) + "\n"


def throughput_table(throughput: dict[str, dict]) -> str:
    rows = [
        "| system | examples/s | s/example | output tokens/s | wall s | engine start s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in throughput.items():
        rows.append(
            f"| {name} | {t['examples_per_s']} | {t['seconds_per_example']} | "
            f"{t['output_tokens_per_s']} | {t['wall_s']} | {t['engine_startup_s']} | {t['peak_rss_mib']} |"
        )
    return "\n".join(rows) + "\n"


COVERAGES = (0.05, 0.10, 0.20, 0.50, 1.00)


def precision_at(curve: Sequence[dict], coverage: float) -> float:
    """Precision at the curve's widest point that covers no more than `coverage` (its first point
    if even that covers more)."""
    within = [p for p in curve if p["coverage"] <= coverage + 1e-9]
    return (within[-1] if within else curve[0])["precision"]


def confidence_table(systems: Sequence[dict]) -> str:
    rows = ["| system | threshold | coverage | precision (exact of posted) | 95% interval | "
            + " | ".join(f"precision at {c:.0%}" for c in COVERAGES) + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(COVERAGES)]
    for s in systems:
        c = s["confidence"]
        at = " | ".join(f"{precision_at(c['curve'], cov):.1%}" for cov in COVERAGES)
        low, high = c["precision_interval"]
        rows.append(f"| {s['name']} | {c['threshold']:.3f} | {c['coverage']:.1%} | "
                    f"{c['precision']:.1%} ({c['exact']} of {c['posted']}) | {low:.1%}–{high:.1%} | {at} |")
    return "\n".join(rows) + "\n"


def render_report(output: Path, metrics: dict, scores: Sequence[SystemScore]) -> str:
    """Write report.md and report.png into `output`; return the Markdown."""
    parts = [f"# Revisor benchmark: {metrics['dataset']} ({metrics['n']} records)\n", table(scores)]
    confident = [s for s in metrics["systems"] if "confidence" in s]
    if confident:
        parts += ["\n## Precision against coverage\n",
                  "Coverage: the fraction of all records that get a suggestion; precision: the Exact "
                  "Match among them. At the threshold, then at fixed coverages (most confident "
                  "first; the peers post everything).\n\n", confidence_table(confident)]
        parts += [f"\n{s['name']}: {broken['n']} revision(s) held back at any threshold for adding "
                  f"syntax errors ({broken['exact']} of them exact).\n"
                  for s in confident if (broken := s["confidence"]["held_back_for_syntax"])["n"]]
    if metrics["throughput"]:
        parts += ["\n## Throughput\n", throughput_table(metrics["throughput"])]
    if metrics["ratios"]:
        parts.append("\n## Ratios (same run)\n")
        parts += [f"- {name}: {value}×\n" for name, value in metrics["ratios"].items()]
    if metrics["skipped_records"]:
        parts.append(f"\n{len(metrics['skipped_records'])} malformed record(s) skipped.\n")
    markdown = "".join(parts)
    (output / "report.md").write_text(markdown, encoding="utf-8")
    _charts(output / "report.png", scores, confident, metrics["dataset"])
    return markdown


def _charts(path: Path, scores: Sequence[SystemScore], confident: Sequence[dict], title: str) -> None:
    """Exact Match as bars; beside them, each Revisor system's precision against coverage, with
    the peers' full-coverage Exact Match as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if confident else 1
    figure, axes = plt.subplots(1, panels, figsize=(max(4, 1.4 * len(scores) + 2) + 5 * (panels - 1), 4),
                                squeeze=False)
    bars_axes = axes[0][0]
    values = [100 * s.exact_match for s in scores]
    bars = bars_axes.bar([s.name for s in scores], values, color="#4C72B0")
    bars_axes.bar_label(bars, labels=[f"{v:.1f}%" for v in values])
    bars_axes.set_ylabel("Exact Match (%)")
    bars_axes.set_title(f"Exact Match on {Path(title).parent.name}/{Path(title).name}", fontsize=10)
    bars_axes.set_ylim(0, max(values + [1]) * 1.2)
    plt.setp(bars_axes.get_xticklabels(), rotation=20, ha="right")
    if confident:
        curve_axes = axes[0][1]
        for s in confident:
            c = s["confidence"]
            curve_axes.plot([100 * p["coverage"] for p in c["curve"]],
                            [100 * p["precision"] for p in c["curve"]], label=s["name"])
            curve_axes.scatter([100 * c["coverage"]], [100 * c["precision"]], marker="x", color="black")
        revisor = {s["name"] for s in confident}
        for score in scores:
            if score.name not in revisor and not score.name.startswith("revisor/"):
                curve_axes.scatter([100], [100 * score.exact_match], label=score.name, zorder=3)
        curve_axes.set_xscale("log")
        curve_axes.set_xlabel("coverage (% of records with a suggestion, log scale)")
        curve_axes.set_ylabel("precision (% exactly right)")
        curve_axes.set_title("Precision against coverage (x: the threshold)", fontsize=10)
        curve_axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
