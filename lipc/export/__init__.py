"""Export stage: ONNX models carrying their certified Lipschitz constant and privacy guarantee."""

from lipc.export.onnx_export import ExportReport, export_run

__all__ = ["ExportReport", "export_run"]
