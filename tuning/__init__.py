"""Training: adapters (LoRA, prompt tuning) and encoders, written to `adapters/` for the bot to read."""
