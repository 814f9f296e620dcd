"""Plan validation (``plans.validate``), packed-artifact downloads and the CI gate."""
