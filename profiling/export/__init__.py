"""The deploy path: ONNX graphs with integer weight initializers and QDQ activations.

``layer_onnx.layer_model`` builds one layer in the exact form ``bundle.export_plan`` writes for
the whole model; ``ort_model.OrtModel`` runs an export folder in ONNX Runtime behind the same
interface as the PyTorch task adapter. Imports stay lazy: this package must not pull in
onnxruntime until something is exported or run.
"""

from __future__ import annotations

from profiling.export.errors import ExportError

__all__ = ["ExportError"]
