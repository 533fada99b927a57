"""Benchmark reports: a Markdown table, a bar chart of Exact Match, and the printed table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.metrics import SystemScore


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


def render_report(output: Path, metrics: dict, scores: Sequence[SystemScore]) -> str:
    """Write report.md and report.png into `output`; return the Markdown."""
    parts = [f"# Revisor benchmark: {metrics['dataset']} ({metrics['n']} records)\n", table(scores)]
    if metrics["throughput"]:
        parts += ["\n## Throughput\n", throughput_table(metrics["throughput"])]
    if metrics["ratios"]:
        parts.append("\n## Ratios (same run)\n")
        parts += [f"- {name}: {value}×\n" for name, value in metrics["ratios"].items()]
    if metrics["skipped_records"]:
        parts.append(f"\n{len(metrics['skipped_records'])} malformed record(s) skipped.\n")
    markdown = "".join(parts)
    (output / "report.md").write_text(markdown, encoding="utf-8")
    _bar_chart(output / "report.png", scores, metrics["dataset"])
    return markdown


def _bar_chart(path: Path, scores: Sequence[SystemScore], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(4, 1.4 * len(scores) + 2), 4))
    values = [100 * s.exact_match for s in scores]
    bars = axes.bar([s.name for s in scores], values, color="#4C72B0")
    axes.bar_label(bars, labels=[f"{v:.1f}%" for v in values])
    axes.set_ylabel("Exact Match (%)")
    axes.set_title(f"Exact Match on {Path(title).parent.name}/{Path(title).name}", fontsize=10)
    axes.set_ylim(0, max(values + [1]) * 1.2)
    plt.setp(axes.get_xticklabels(), rotation=20, ha="right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
