"""The split stage: kept clips -> VALOR-1M / VALOR-32K parts (or Youku-mPLUG's published splits)."""

from valor_data.split.config import SplitConfig
from valor_data.split.run import SPLITS_FILE, SUMMARY_FILE, SplitSummary, read_summary, run_split

__all__ = ["SPLITS_FILE", "SUMMARY_FILE", "SplitConfig", "SplitSummary", "read_summary", "run_split"]
