"""The Report (JSON, the contract between training and CI), the registry of measures, and
the renderers (table, Markdown, history)."""

from .history import history_table
from .registry import MEASURES, Measure
from .render import to_markdown, to_table
from .report import SCHEMA_VERSION, LayerReport, Report, summarize

__all__ = ["MEASURES", "SCHEMA_VERSION", "LayerReport", "Measure", "Report", "history_table",
           "summarize", "to_markdown", "to_table"]
