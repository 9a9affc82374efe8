"""Capacity planning: which GPU type, how many, and whether a mix of types is cheaper.

An instance whose cluster offers several candidate GPU types (each with its availability and
price) is planned here: every type is solved as its own exact problem (``offers``), replica
designs of each type are measured with the exact physics (``designs``), a small CP-SAT model
picks the cheapest mix of replicas behind one router (``mix``), and every group of a mix is
re-planned and verified at its share of the load (``planner``). The public entry is
:func:`solver.api.solve_file` / :func:`solver.api.plan_capacity`, which call :func:`plan_capacity`.
"""

from .planner import CapacityResult, plan_capacity

__all__ = ["CapacityResult", "plan_capacity"]
