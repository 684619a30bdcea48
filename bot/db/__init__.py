"""Persistence: SQLAlchemy models, the engine and session factory, the repository."""
