"""Everything in bitbudget that touches torch: models, inventory, calibration, quantization,
sensitivity and evaluation. No HTTP, no SQL."""
