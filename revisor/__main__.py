"""`python -m revisor`: the `revisor` command."""

from revisor.bot.cli import main

main()
