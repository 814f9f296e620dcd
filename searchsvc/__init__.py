"""bitbudget's service side: REST API, jobs, database, CLI and dashboard."""
