"""Fault scenarios: the real service under load while Postgres or gunicorn is stopped or killed.

`scenarios.py` runs each scenario and checks its invariants; `test_faults.py` asserts them
under pytest (marker `fault`) and `report.py` prints the same results as a table
(`make reliability`), so the numbers printed are the numbers tested.
"""
