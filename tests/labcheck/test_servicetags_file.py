"""The lab's service-tags file, committed beside the lab's agent configs, is current."""

import json
from pathlib import Path

from tests.lab import servicetags

COMMITTED = Path(__file__).parents[1] / "lab" / "agents" / "ServiceTags_Public_lab.json"


def test_committed_copy_matches_the_plan():
    assert json.loads(COMMITTED.read_text()) == servicetags.document(), (
        'regenerate: python -c "from tests.lab import servicetags; '
        "servicetags.write('tests/lab/agents/ServiceTags_Public_lab.json')\""
    )
