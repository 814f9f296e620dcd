"""Registered models: a spec built once to record its weights hash and inventory."""
