"""Rendering a review's result for a terminal or as JSON."""

from __future__ import annotations

import json

from revisor.bot.pipeline import ReviewResult
from revisor.model.prompts import fenced
from revisor.model.schema import LowConfidence


def review_text(result: ReviewResult) -> str:
    """Each suggestion as it would be posted, each held-back answer with its confidence against
    the threshold, then the summary."""
    out = []
    for s in result.suggestions:
        sure = f", confidence {s.confidence:.2f}" if s.confidence is not None else ""
        out.append(f"{s.region.location}  suggestion{sure}")
        if s.rationale:
            out.append(f"  review: {s.rationale}")
        out.append(fenced(s.replacement, "suggestion"))
        out.append("")
    for region, outcome, comment in result.no_suggestion:
        if isinstance(outcome, LowConfidence):
            out.append(f"{region.location}  held back: confidence {outcome.confidence:.2f}, below the "
                       f"threshold {outcome.threshold:.2f}")
            if comment:
                out.append(f"  review: {comment}")
            out.append("")
    out.append(summary(result))
    return "\n".join(out) + "\n"


def summary(result: ReviewResult) -> str:
    held = result.low_confidence
    lines = [
        f"{len(result.suggestions)} suggestion(s) from {result.regions_reviewed} region(s) reviewed; "
        f"{held} held back as not confident enough; "
        f"{len(result.no_suggestion) - held} without a suggestion."
    ]
    for region, outcome, _ in result.no_suggestion:
        if not isinstance(outcome, LowConfidence):
            lines.append(f"  no suggestion for {region.location}: {outcome.reason}")
    if result.over_budget:
        lines.append(f"Budget: {len(result.over_budget)} region(s) not reviewed:")
        lines.extend(f"  {region.location}: {reason}" for region, reason in result.over_budget)
    for path, reason in result.skipped_files:
        lines.append(f"  skipped {path}: {reason}")
    return "\n".join(lines)


def review_json(result: ReviewResult) -> str:
    def where(region):
        return {"path": region.path, "start_line": region.start, "line": region.end}

    data = {
        "suggestions": [
            {**where(s.region), "rationale": s.rationale, "original": s.region.code,
             "replacement": s.replacement, "confidence": s.confidence}
            for s in result.suggestions
        ],
        "no_suggestion": [
            {**where(r), "reason": outcome.reason, "comment": comment or None,
             "confidence": getattr(outcome, "confidence", None),
             "threshold": getattr(outcome, "threshold", None)}
            for r, outcome, comment in result.no_suggestion],
        "over_budget": [{**where(r), "reason": reason} for r, reason in result.over_budget],
        "skipped_files": [{"path": p, "reason": reason} for p, reason in result.skipped_files],
        "regions_reviewed": result.regions_reviewed,
    }
    return json.dumps(data, indent=2) + "\n"
