"""The command line: `main` parses, then imports only the module of the command that runs (so
`isolate` starts fast); commands/ holds one module per group of commands."""

from agent.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
