"""painterly's benchmark suite against textbook reference implementations: `python -m benchmarks`.

What each workload measures, and how, is described in `benchmarks/__main__.py`.
"""
