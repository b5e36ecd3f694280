"""Studies: one-off measurements behind figures and defaults of the docs, each a `python -m
bench.studies.NAME` command. Not part of the benchmark or the library; each has a smoke test at a
tiny size (tests/test_studies.py), so none rots unnoticed.
"""
