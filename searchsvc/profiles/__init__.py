"""Sensitivity profiles: requested through the API, computed by ``profiling.run_profile``."""
