"""End-to-end benchmarks of tradebus: ``python -m benchmarks`` prints one table.

See ``benchmarks/README.md`` for what each row measures, how, and the latest results.
"""
