"""Suite-wide rules: which tests need root, and what happens when it is missing.

Lab and root tests run by default wherever the user is root.  Elsewhere they
are skipped with a one-line reason, except when ERPATH_REQUIRE_LAB=1 (set by
.ci/run): then a lab that cannot run is a failure, never a silent skip.
"""

import os

import pytest

pytest_plugins = ["tests.lab.fixture", "tests.pgfixture"]
REQUIRE_LAB = os.environ.get("ERPATH_REQUIRE_LAB") == "1"
IS_ROOT = os.geteuid() == 0


def pytest_runtest_setup(item: pytest.Item) -> None:
    if IS_ROOT:
        return
    if item.get_closest_marker("lab") or item.get_closest_marker("root"):
        reason = "needs root (network namespaces, raw sockets); run the suite as root"
        if REQUIRE_LAB:
            pytest.fail(f"ERPATH_REQUIRE_LAB=1 but {reason}")
        pytest.skip(reason)
