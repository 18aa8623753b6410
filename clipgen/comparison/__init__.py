"""`clipgen compare`: several generators, the same prompts, seeds and sample counts, one report."""

from clipgen.comparison.run import CompareJob, run_compare

__all__ = ["CompareJob", "run_compare"]
