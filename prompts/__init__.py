"""Prompt rendering shared by training and serving: formats, task templates, locales, knowledge base."""
