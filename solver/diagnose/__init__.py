"""Diagnosis of infeasible problems: minimal conflicts, certificates in numbers, verified repairs.

Owns the proof block of the JSON document. It sits above :mod:`solver.search` (its oracle is a
guarded CP-SAT model, its repairs are ordinary solves of changed instances) and below the report,
the API and the runners. Modules: ``oracle`` (feasibility under a rule subset, deletion filter),
``certificate`` (each member's numbers, physics bounds), ``repairs``, ``proof`` (the entry point).
"""

from .proof import diagnose

__all__ = ["diagnose"]
