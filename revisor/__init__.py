"""Revisor: code-review comments turned into committable suggestions, served by vLLM.

`revisor.model` turns code and a comment into revised code, `revisor.training` trains, calibrates
and benchmarks, and `revisor.bot` answers on GitHub and holds the `revisor` command.
"""
