"""The chat bot: front ends → dialogue manager → router → engine → store."""
