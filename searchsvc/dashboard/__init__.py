"""The dashboard: server-rendered pages of models, Pareto fronts, plans and jobs."""
