"""pytest fixtures: `lab` (session: built once, torn down at the end) and
`lab_scenario` (function: switch scenarios, `er` restored afterwards).

Not root: skipped, or failed when ERPATH_REQUIRE_LAB=1.  A lab that fails to
build is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from .lab import Lab
from .scenarios import DEFAULT_SCENARIO


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    reason = "the lab needs root (network namespaces)"
    if os.environ.get("ERPATH_REQUIRE_LAB") == "1":
        pytest.fail(f"ERPATH_REQUIRE_LAB=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    _require_root()
    instance = Lab()  # prefix from ERPATH_LAB_PREFIX
    instance.rate_limit, instance.ecmp = True, True  # a fresh build starts from the defaults
    instance.up(DEFAULT_SCENARIO)  # raises LabError (a test error) if building fails
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture
def lab_scenario(lab: Lab) -> Iterator[Callable[[str], Lab]]:
    """`lab_scenario("asymmetric-nat")` switches; `er` (and the options) come back after."""
    before = (lab.rate_limit, lab.ecmp)

    def switch(name: str) -> Lab:
        lab.scenario(name)
        return lab

    try:
        yield switch
    finally:
        if lab.current_scenario != DEFAULT_SCENARIO:
            lab.scenario(DEFAULT_SCENARIO)
        if lab.rate_limit != before[0]:
            lab.set_rate_limit(before[0])
        if lab.ecmp != before[1]:
            lab.set_ecmp(before[1])
