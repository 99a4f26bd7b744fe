"""Shared core of babelbot: what both `bot` and `tuning` need (languages, model loading, config).

`bot` serves, `tuning` trains; neither imports the other. Everything both need lives here,
in `prompts` (prompt rendering, knowledge base) or in `adapters` (the adapter registry).
"""

__version__ = "0.1.0"
