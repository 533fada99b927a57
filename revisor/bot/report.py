"""Rendering a review's result for a terminal or as JSON."""

from __future__ import annotations

import json

from revisor.bot.pipeline import ReviewResult
from revisor.model.prompts import fenced


def review_text(result: ReviewResult) -> str:
    out = []
    for s in result.suggestions:
        out.append(f"{s.region.location}" + (f"  (confidence {s.confidence:.2f})" if s.confidence is not None
                                               else ""))
        if s.rationale:
            out.append(f"  review: {s.rationale}")
        out.append(fenced(s.replacement, "suggestion"))
        out.append("")
    out.append(summary(result))
    return "\n".join(out) + "\n"


def summary(result: ReviewResult) -> str:
    lines = [
        f"{len(result.suggestions)} suggestion(s) from {result.regions_reviewed} region(s) reviewed; "
        f"{len(result.no_suggestion)} without a suggestion."
    ]
    for region, reason in result.no_suggestion:
        lines.append(f"  no suggestion for {region.location}: {reason}")
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
        "no_suggestion": [{**where(r), "reason": reason} for r, reason in result.no_suggestion],
        "over_budget": [{**where(r), "reason": reason} for r, reason in result.over_budget],
        "skipped_files": [{"path": p, "reason": reason} for p, reason in result.skipped_files],
        "regions_reviewed": result.regions_reviewed,
    }
    return json.dumps(data, indent=2) + "\n"
