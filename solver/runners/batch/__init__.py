"""Batch regression: many instances solved, each judged against the expectation in its own file.

``solve instances/ --check`` is the project's regression gate (docs/batch.md). Modules: ``run``
(collect files, solve rows in parallel processes), ``expectations`` (read and record ``expect``
blocks), ``verdicts`` (judge a row), ``reports`` (table, Markdown, JUnit, JSON), ``command``
(the command-line flow and its exit code). Rows go one way: run -> verdicts -> reports.
"""
