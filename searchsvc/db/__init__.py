"""Database: tables (SQLAlchemy 2), engine and sessions, Alembic migrations run programmatically."""
