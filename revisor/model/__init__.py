"""Turning (code, review comment) into revised code: schema, prompts, engines, parsing."""
