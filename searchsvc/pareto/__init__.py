"""Pareto fronts (loss vs one resource) from a model's profile, stored as artifacts."""
