"""Front ends: thin adapters from a channel (web, Telegram, terminal, JSONL) to the dialogue manager."""
