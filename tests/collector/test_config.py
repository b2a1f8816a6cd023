"""Config loading: every error names the file, the key and the fix."""

from __future__ import annotations

import pytest

from collector.config import ConfigError, documented_keys, load


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
    for section, keys in documented_keys().items():
        assert f"[{section}]" in doc, section
        for key, _, _ in keys:
            assert f"`{key}`" in doc, f"{section}.{key} is not documented"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nprot = 1\n", "[server] prot: unknown key; remove it (known keys:"),
        ("[sever]\n", "[sever]: unknown section; remove it (known sections: server, store,"),
        ("[server]\nport = 'x'\n", "[server] port: must be an integer, not 'x'"),
        ("[server]\nport = 70000\n", "[server] port: 70000 is not a TCP port; use 1-65535"),
        (
            "[server]\ntls_cert_file = '/nope.pem'\n",
            "[server] tls_cert_file and tls_key_file: set both",
        ),
        (
            "[server]\nclient_cert_required = true\n",
            "[server] client_ca_file: client certificates need TLS",
        ),
        (
            "[alerts]\nalertmanager_urls = 'http://x'\n",
            "[alerts] alertmanager_urls: must be a list of strings",
        ),
        (
            "[alerts]\nalertmanager_urls = ['am:9093']\n",
            "[alerts] alertmanager_urls: 'am:9093' is not an http(s) URL",
        ),
        (
            "[detection]\nflip_confirm_reports = 0\n",
            "[detection] flip_confirm_reports: 0 must be greater than 0",
        ),
        (
            "[store]\njournal_mode = 'memory'\n",
            "[store] journal_mode: 'memory'; use 'wal' or 'delete'",
        ),
        (
            "[metrics]\nper_site_aggregates = 1\n",
            "[metrics] per_site_aggregates: must be true or false, not 1",
        ),
        ("server = 1\n", "[server] must be a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_invalid_configs_name_file_key_and_fix(tmp_path, text, expected):
    problems = _problems(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
