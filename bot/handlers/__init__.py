"""Telegram handlers, one module per flow; each exposes ``handlers(settings)``."""
