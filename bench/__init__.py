"""`make bench`: Janus under load next to its ceilings (see bench/run.py and bench/scenarios.py)."""
