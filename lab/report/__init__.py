"""Reports of results: the article's table side by side with ours, plots, a reproduction score."""

from .build import build_report
from .compare import compare_results

__all__ = ["build_report", "compare_results"]
