"""`clipgen demo`: the whole method on the built-in shapes-zh corpus, on a CPU, with a report."""

from clipgen.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
