"""Reports of trained runs: an HTML page with embedded charts, and the charts as PNG files."""

from lipc.report.page import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
