"""Runners: the ``solve`` command line (``cli``) and batch regression over folders (``batch``).

They sit on top of everything and use the public API (:mod:`solver.api`) as a user would.
"""
