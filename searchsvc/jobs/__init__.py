"""Background jobs: the job row is the truth; Celery or an in-process thread pool is transport."""
