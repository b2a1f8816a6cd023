"""`erpath-agent service-tags update` / `communities update`, against a real HTTP server on loopback.

The server plays Microsoft's download page (a page linking this week's dated
file) and an internal mirror; the file it serves is the real
ServiceTags_Public.json from ../shared/data (read there, never committed).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load
from tests.agent.servicetags_doc import tag_entry, tags_document

REAL = Path("/work/shared/data/ServiceTags_Public.json")
HERE = Path(__file__).parent
SAMPLE = HERE / "configs" / "valid" / "servicetags-sample.json"
COMMUNITIES = HERE / "facts" / "fixtures" / "cli" / "service-communities.json"
DATED = "ServiceTags_Public_20261123.json"

needs_real_file = pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is not on this machine")


def _tags(change: int, prefixes: list[str]) -> bytes:
    entry = tag_entry("PowerPlatformInfra", prefixes, changeNumber=change)
    return json.dumps(tags_document(entry, change=change)).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    pages: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hit = pages.get(self.path)
            if hit is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", hit[0])
            self.send_header("Content-Length", str(len(hit[1])))
            self.end_headers()
            self.wfile.write(hit[1])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    page = (
        "<html><body><h1>Azure IP Ranges and Service Tags - Public Cloud</h1>"
        f'<a href="{base}/download/7/1/D/{DATED}" class="mscom-link">Download</a></body></html>'
    )
    pages.update(
        {
            "/details.aspx?id=56519": ("text/html; charset=utf-8", page.encode()),
            # the same page with a link relative to it
            "/relative.aspx": ("text/html", f'<a href="download/{DATED}">x</a>'.encode()),
            "/nolink.aspx": ("text/html", b"<html>moved</html>"),
            # the link in a script's JSON, escaped, next to last week's
            "/script.aspx": (
                "text/html",
                (
                    '<script>window.__DLCDetails__={"files":[{"url":"'
                    + f"{base}/download/ServiceTags_Public_20261116.json".replace("/", "\\/")
                    + '"},{"url":"'
                    + f"{base}/download/{DATED}".replace("/", "\\/")
                    + '"}]}</script>'
                ).encode(),
            ),
            "/mirror/old.json": ("application/json", _tags(1, ["198.18.10.0/24"])),
            "/mirror/tiny.json": ("application/octet-stream", _tags(9999, ["198.18.10.0/24"])),
            "/mirror/communities.json": ("application/json", COMMUNITIES.read_bytes()),
        }
    )
    if REAL.is_file():
        real = REAL.read_bytes()
        pages[f"/download/7/1/D/{DATED}"] = ("application/octet-stream", real)
        pages[f"/download/{DATED}"] = ("application/octet-stream", real)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield base
    httpd.shutdown()
    httpd.server_close()


def config_with(tmp_path: Path, table: str, **keys: str) -> Path:
    body = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    path = tmp_path / "agent.toml"
    path.write_text(f"[{table}]\n{body}")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused_update(capsys, tmp_path: Path, current: Path | None, *source: str) -> tuple[Path, str]:
    """`service-tags update` from `source` (--url or --file, and where) over a tags file holding
    `current`'s bytes (None: no file yet) must refuse -- exit 1 -- and leave the file as it was.
    Returns the tags file and the error."""
    tags = tmp_path / "tags.json"
    if current is not None:
        tags.write_bytes(current.read_bytes())
    config = config_with(tmp_path, "service_tags", file=str(tags))
    code, _, err = run(capsys, "service-tags", "update", "--config", str(config), *source)
    assert code == 1
    if current is None:
        assert not tags.exists()
    else:
        assert tags.read_bytes() == current.read_bytes()
    return tags, err


@needs_real_file
def test_download_page_link_is_followed_and_the_agent_uses_the_new_file_next_cycle(
    server, tmp_path, capsys
):
    tags = tmp_path / "ServiceTags_Public.json"
    tags.write_bytes(SAMPLE.read_bytes())
    config = config_with(
        tmp_path, "service_tags", file=str(tags), url=f"{server}/details.aspx?id=56519"
    )
    agent = load(config)
    assert agent.load_service_tags().change_number == 1

    code, out, err = run(capsys, "service-tags", "update", "--config", str(config))
    assert code == 0, err
    assert out.startswith(f"service tags {tags}: updated from {server}/download/7/1/D/{DATED} ")
    assert "changeNumber 376, 3041 entries" in out
    assert tags.read_bytes() == REAL.read_bytes()
    assert (tmp_path / "ServiceTags_Public.json.previous").read_bytes() == SAMPLE.read_bytes()
    # the loaded config (the running agent's) reads the new file at its next call
    assert agent.load_service_tags().change_number == 376
    assert not list(tmp_path.glob(".ServiceTags*"))  # no temporary file left behind

    code, out, _ = run(capsys, "service-tags", "update", "--config", str(config))
    assert (code, out) == (
        0,
        f"service tags {tags}: up to date (changeNumber 376, 3041 entries, "
        f"{agent.load_service_tags().prefix_count} prefixes)\n",
    )


@needs_real_file
def test_relative_link_and_first_download_without_a_file(server, tmp_path, capsys):
    tags = tmp_path / "state" / "tags.json"
    config = config_with(tmp_path, "service_tags", file=str(tags), url=f"{server}/relative.aspx")
    code, out, err = run(capsys, "service-tags", "update", "--config", str(config))
    assert code == 0, err
    assert f"updated from {server}/download/{DATED}" in out
    assert not (tmp_path / "state" / "tags.json.previous").exists()
    assert load(config).load_service_tags().change_number == 376


@needs_real_file
def test_escaped_links_in_a_script_the_newest_wins(server, tmp_path, capsys):
    tags = tmp_path / "tags.json"
    config = config_with(tmp_path, "service_tags", file=str(tags), url=f"{server}/script.aspx")
    code, out, err = run(capsys, "service-tags", "update", "--config", str(config))
    assert code == 0, err
    assert f"updated from {server}/download/{DATED} " in out


@needs_real_file
def test_an_older_change_number_is_refused(server, tmp_path, capsys):
    tags, err = refused_update(capsys, tmp_path, REAL, "--url", f"{server}/mirror/old.json")
    assert err == (
        f"erpath-agent: service-tags update refused: {server}/mirror/old.json: changeNumber 1 is "
        f"older than {tags}'s 376; kept the current file (a stale mirror?)\n"
    )


@needs_real_file
def test_far_fewer_prefixes_is_refused(server, tmp_path, capsys):
    _, err = refused_update(capsys, tmp_path, REAL, "--url", f"{server}/mirror/tiny.json")
    assert "lists 1 prefixes, less than half of" in err
    assert "kept the current file (a truncated or wrong download?)" in err


def test_a_truncated_file_is_refused(tmp_path, capsys):
    half = tmp_path / "half.json"
    half.write_bytes(SAMPLE.read_bytes()[:100])
    _, err = refused_update(capsys, tmp_path, SAMPLE, "--file", str(half))
    assert f"{half}: not valid JSON" in err and "a truncated download?" in err


def test_another_json_file_is_refused(tmp_path, capsys):
    _, err = refused_update(capsys, tmp_path, None, "--file", str(COMMUNITIES))
    assert err.startswith(
        f"erpath-agent: service-tags update refused: service tags file {COMMUNITIES}: "
    )


def test_a_page_without_the_link_and_a_404_keep_the_file(server, tmp_path, capsys):
    _, err = refused_update(capsys, tmp_path, SAMPLE, "--url", f"{server}/nolink.aspx")
    assert "neither JSON nor a page linking ServiceTags_Public_YYYYMMDD.json" in err
    _, err = refused_update(capsys, tmp_path, SAMPLE, "--url", f"{server}/gone")
    assert f"{server}/gone: HTTP 404 Not Found; check the URL" in err


def test_no_file_or_no_url_in_the_config_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nsite = "ams"\n')
    code, _, err = run(capsys, "service-tags", "update", "--config", str(config))
    assert code == 2
    assert "[service_tags] has no file; set file = where the agent keeps it" in err
    config = config_with(tmp_path, "service_tags", file=str(tmp_path / "t.json"))
    code, _, err = run(capsys, "service-tags", "update", "--config", str(config))
    assert code == 2
    assert "[service_tags] has no url; set url = the download page or a mirror" in err


def test_communities_update_from_a_mirror_and_if_configured(server, tmp_path, capsys):
    file = tmp_path / "communities.json"
    config = config_with(
        tmp_path, "bgp_communities", file=str(file), url=f"{server}/mirror/communities.json"
    )
    code, out, err = run(capsys, "communities", "update", "--config", str(config))
    assert code == 0, err
    assert out.startswith(
        f"BGP communities {file}: updated from {server}/mirror/communities.json (4 entries"
    )
    assert load(config).load_bgp_communities().get("12076:51002").name == "Azure West Europe"
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    code, out, _ = run(capsys, "communities", "update", "--config", str(bare), "--if-configured")
    assert (code, out) == (0, f"{bare}: no [bgp_communities] file: nothing to update\n")
