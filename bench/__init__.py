"""Benchmarks that print and save figures. May import anything; nothing imports them."""
