"""Adapter registry: PEFT adapters on disk, one folder each, with our card beside PEFT's files.

`tuning` writes adapters here, `bot` reads them; this module is the contract between them.
"""
