"""GitHub-facing Revisor: diffs, review pipeline, suggestion placement, CLI."""
