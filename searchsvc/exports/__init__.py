"""ONNX exports of solved plans (``POST /v1/plans/{id}/exports`` -> job ``plans.export``)."""
