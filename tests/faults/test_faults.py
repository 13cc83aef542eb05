"""Faults under load, each against real gunicorn and a Postgres of the test's own.

Each test runs one scenario of `scenarios.py` (which stops, kills or restarts Postgres or
gunicorn mid-load) and fails with the scenario's table, notes and broken invariants.
`make reliability` prints the same results for every scenario.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults import scenarios
from tests.faults.scenarios import ScenarioResult

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_invariants_hold_through_the_fault(name: str, tmp_path: Path) -> None:
    """No 500, no hang, no lost or over-admitted job; 503s carry Retry-After; quick recovery."""
    run_scenario: Callable[[Path], ScenarioResult] = scenarios.SCENARIOS[name]

    result = run_scenario(tmp_path)

    assert result.violations == [], f"\n{result}"
