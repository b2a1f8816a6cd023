"""erpath's network-namespace lab: real packets over real kernel routes.

    from tests.lab import Lab
    lab = Lab()                 # prefix from ERPATH_LAB_PREFIX, default "erp"
    lab.up("er"); lab.scenario("asymmetric-nat"); lab.env(); lab.down()

See docs/lab.md.  Importing needs no root; building does.
"""

from .lab import Lab, LabError
from .pathsim import AmbiguousPath
from .scenarios import DEFAULT_SCENARIO, SCENARIOS

__all__ = ["Lab", "LabError", "AmbiguousPath", "SCENARIOS", "DEFAULT_SCENARIO"]
