"""Parameter sweeps: one instance solved at every point of a grid of changed fields (``solve sweep``).

``solve sweep x.json --vary workload.request_rate=1:32:x2 --vary cluster.gpu=a,b`` solves the
Cartesian product of the values, each point with the deterministic settings of the batch runner,
in local processes or on Ray, and reports one row per point with its cost, latency and Pareto
marks (docs/sweep.md). Modules: ``spec`` (the ``--vary`` syntax, sweep files, points),
``run`` (points -> rows), ``pareto`` (frontiers), ``output`` (table, CSV, JSON), ``command``
(the click command). Rows go one way: spec -> run -> pareto -> output.
"""
