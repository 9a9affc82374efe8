"""Calibration: the cost model against measured serving runs, and the fit of its named factors.

Owns the readers of measurements (``measurements``: the calibration CSV, vLLM and SGLang benchmark
result files), their prediction through the engine simulator (``predict``) and the fit of a few
named efficiency factors (``fit``), used by ``benchmarks/latency_fidelity.py`` and ``solve
calibrate`` alike. It imports the physics, the problem resolution and the simulator, never ortools.
"""
