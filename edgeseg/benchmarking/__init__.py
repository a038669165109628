"""What the benchmark scripts in `benchmarks/` report, as library code the scripts call and the tests
check: model specs (`specs`), the targets and their PASS/MISS verdicts (`targets`), the tables and
Markdown (`report`) and the plan of `make bench` (`suite`). The measuring itself stays in the scripts.
"""
