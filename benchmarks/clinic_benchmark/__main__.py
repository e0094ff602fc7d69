"""`python -m benchmarks.clinic_benchmark`: see the package's docstring."""

from benchmarks.clinic_benchmark.cli import main

main()
