"""Offline measurement: router, latency, language weights, adapters, transfer, few-shot.

May import bot and tuning; nothing imports it."""
