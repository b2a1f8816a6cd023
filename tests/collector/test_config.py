"""Config loading: every error names the file, the key and the fix."""

from __future__ import annotations

import pytest

from collector.config import SECTIONS, ConfigError, load


def _load(tmp_path, text: str):
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path, lambda: load(path)


def _problems(tmp_path, text: str) -> list[str]:
    path, go = _load(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        go()
    for p in info.value.problems:
        assert p.startswith(f"{path}: "), p
    return info.value.problems


def test_full_example_from_the_docs_loads(tmp_path):
    doc = (__import__("pathlib").Path(__file__).parents[2] / "docs" / "collector.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    example = example.replace("/var/lib/erpath/collector.db", str(tmp_path / "c.db"))
    example = "\n".join(
        line for line in example.splitlines() if not line.startswith(("tls_", "client_"))
    )
    _, go = _load(tmp_path, example)
    cfg = go()
    assert cfg.alerts.alertmanager_urls and cfg.server.port == 9470


def test_docs_mention_every_key():
    doc = (__import__("pathlib").Path(__file__).parents[2] / "docs" / "collector.md").read_text()
    for section, table in SECTIONS.items():
        assert f"[{section}]" in doc, section
        for key in table.keys:
            assert f"`{key}`" in doc, f"{section}.{key} is not documented"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nprot = 1\n", '[server] prot: unknown key; did you mean "port"?'),
        (
            "[server]\nlisten = 1\n",
            "[server] listen: unknown key; remove it (known keys: host, port, body_limit_bytes,",
        ),
        ("[sever]\n", "[sever]: unknown table; did you mean [server]?"),
        (
            "[server]\nport = 'x'\n",
            '[server] port = "x": must be an integer (no quotes), not a string',
        ),
        ("[server]\nport = 70000\n", "[server] port = 70000: must be from 1 to 65535"),
        (
            "[server]\nhost = 'ams collector'\n",
            '[server] host = "ams collector": is not an address; write e.g. "127.0.0.1", '
            'or "::" for all addresses',
        ),
        (
            "[server]\ntls_cert_file = '/nope.pem'\n",
            '[server] tls_cert_file = "/nope.pem": no such file; give the path of a PEM file',
        ),
        (
            "[server]\ntls_cert_file = '/nope.pem'\n",
            "[server]: tls_cert_file needs tls_key_file: set both (TLS) or neither (plain HTTP)",
        ),
        (
            "[server]\nclient_cert_required = true\n",
            "[server] client_ca_file: client certificates need TLS; "
            "set tls_cert_file and tls_key_file",
        ),
        (
            "[alerts]\nalertmanager_urls = 'http://x'\n",
            '[alerts] alertmanager_urls = "http://x": must be an array, '
            'e.g. alertmanager_urls = ["http://x"]',
        ),
        (
            "[alerts]\nalertmanager_urls = ['am:9093']\n",
            '[alerts] alertmanager_urls[0] = "am:9093": must be an http:// or https:// URL, '
            "e.g. http://127.0.0.1:9093",
        ),
        (
            "[alerts]\nbackoff_initial_s = 10\nbackoff_max_s = 5\n",
            "[alerts] backoff_max_s = 5: must not be below backoff_initial_s (10)",
        ),
        (
            "[detection]\nflip_confirm_reports = 0\n",
            "[detection] flip_confirm_reports = 0: must be from 1 to 1000000",
        ),
        (
            "[store]\nprune_interval_s = 0\n",
            "[store] prune_interval_s = 0: must be more than 0",
        ),
        (
            "[store]\njournal_mode = 'WAL'\n",
            '[store] journal_mode = "WAL": must be one of "wal", "delete"; did you mean "wal"?',
        ),
        (
            "[metrics]\nper_site_aggregates = 1\n",
            "[metrics] per_site_aggregates = 1: must be true or false (no quotes), not an integer",
        ),
        (
            "server = 1\n",
            "[server]: must be a table; write [server] on a line of its own, then its keys",
        ),
        ("[server\n", "TOML syntax error at line 1, column 8: Expected ']' at the end of a table"),
    ],
)
def test_invalid_configs_name_file_key_and_fix(tmp_path, text, expected):
    problems = _problems(tmp_path, text)
    path = tmp_path / "collector.toml"
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
