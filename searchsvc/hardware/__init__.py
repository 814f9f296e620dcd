"""Named hardware profiles: shipped roofline estimates and measured latency tables (issue #16)."""
