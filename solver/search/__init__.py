"""Search: the CP-SAT planner over enumerated candidate tables (DESIGN rules 1-10).

Owns the candidate options and their integer tables (``options``), the model with one guard literal
per rule (``model``), checks on the same tables without CP-SAT (``witness``: the even-split grid,
hints, feasibility witnesses, bounds), objectives and their units (``objectives``), the solve
phases with lexicographic tie-breaks (``planner``) and ``decode``. It takes its numbers from
:mod:`solver.physics` and hands every decoded plan to :mod:`solver.verify`.
"""
