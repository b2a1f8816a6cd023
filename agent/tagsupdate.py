"""Keeping the service tags file (and the BGP communities file) fresh: fetch, check, swap.

Microsoft publishes `ServiceTags_Public_YYYYMMDD.json` weekly under a new,
dated name, so the source is either a fixed URL of an internal mirror or the
download page, whose current link is resolved here (a page that is HTML is
searched for the JSON's link).  A new file is used only if it is Azure's
format, its changeNumber is not older than the current file's and it lists
at least half as many prefixes (a truncated or wrong download is refused);
it then replaces the configured file atomically, the previous copy kept as
`<file>.previous`.  The running agent reads the file at every cycle (cached
by mtime and size), so the new one is used from the next cycle on.

urllib (standard library) fetches; no other network library is needed for
one GET.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from agent.verdict.communities import BgpCommunities, CommunitiesError
from agent.verdict.servicetags import ServiceTags, ServiceTagsError

Kind = Literal["service-tags", "communities"]

MAX_BYTES = 64 * 1024 * 1024  # the real service tags file is ~4 MB
FETCH_TIMEOUT_S = 60.0
# A new file listing fewer than this share of the current one's prefixes is
# a truncated download or another file, not a weekly change.
MIN_PREFIX_RATIO = 0.5
PREVIOUS_SUFFIX = ".previous"
_JSON_LINK = re.compile(r"""(?:href=|["'\s])["']?([^"'\s<>]*ServiceTags_Public_\d{8}\.json)""")


class UpdateError(Exception):
    """The update was refused or failed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    source: str  # the URL or file the JSON came from (the resolved link for a page)


@dataclass(frozen=True, slots=True)
class Checked:
    """A candidate file, understood: its change number (service tags only) and size."""

    change_number: int | None
    prefix_count: int
    entries: int  # tags or communities


@dataclass(frozen=True, slots=True)
class Outcome:
    dest: Path
    source: str
    new: Checked
    old: Checked | None
    replaced: bool  # False: the file was already this one

    def summary(self, kind: Kind) -> str:
        noun = "service tags" if kind == "service-tags" else "BGP communities"
        change = f"changeNumber {self.new.change_number}, " if self.new.change_number else ""
        what = f"{change}{self.new.entries} entries, {self.new.prefix_count} prefixes"
        if not self.replaced:
            return f"{noun} {self.dest}: up to date ({what})"
        was = ""
        if self.old is not None:
            old_change = (
                f"changeNumber {self.old.change_number}, " if self.old.change_number else ""
            )
            was = f"; was {old_change}{self.old.prefix_count} prefixes, kept as {self.dest}{PREVIOUS_SUFFIX}"
        return f"{noun} {self.dest}: updated from {self.source} ({what}{was})"


# --------------------------------------------------------------------------- fetching


def fetch_url(url: str, *, timeout_s: float = FETCH_TIMEOUT_S) -> Fetched:
    """GET the URL; an HTML page is searched for the ServiceTags_Public_*.json link, then that is fetched."""
    data, content_type = _get(url, timeout_s)
    if _looks_like_json(data, content_type):
        return Fetched(data, url)
    # The page's links may sit in a script's JSON ("https:\/\/download...");
    # the newest date wins should it list more than one.
    text = data.decode("utf-8", "replace").replace("\\/", "/")
    links = sorted(_JSON_LINK.findall(text), key=lambda link: link[-13:-5])
    if not links:
        raise UpdateError(
            f"{url}: neither JSON nor a page linking ServiceTags_Public_YYYYMMDD.json; "
            "set url to the download page or to a mirror of the JSON file"
        )
    link = urljoin(url, links[-1].replace("&amp;", "&"))
    data, content_type = _get(link, timeout_s)
    if not _looks_like_json(data, content_type):
        raise UpdateError(f"{link} (linked from {url}): not JSON")
    return Fetched(data, link)


def read_file(path: str | os.PathLike[str]) -> Fetched:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UpdateError(f"{os.fspath(path)}: cannot read it: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise UpdateError(f"{os.fspath(path)}: larger than {MAX_BYTES} bytes; not a tags file")
    return Fetched(data, os.fspath(path))


def _get(url: str, timeout_s: float) -> tuple[bytes, str]:
    if urlsplit(url).scheme not in ("http", "https"):
        raise UpdateError(f"{url}: not an http:// or https:// URL")
    request = urllib.request.Request(url, headers={"User-Agent": "erpath-agent"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
            data = response.read(MAX_BYTES + 1)
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raise UpdateError(f"{url}: HTTP {e.code} {e.reason}; check the URL") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UpdateError(f"{url}: cannot fetch it ({reason}); kept the current file") from None
    if len(data) > MAX_BYTES:
        raise UpdateError(f"{url}: larger than {MAX_BYTES} bytes; not a tags file")
    return data, content_type


def _looks_like_json(data: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or data.lstrip()[:1] in (b"{", b"[")


# --------------------------------------------------------------------------- checking


def check(kind: Kind, data: bytes, source: str) -> Checked:
    """Parse and index the candidate; UpdateError if it is not Azure's format."""
    try:
        doc: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UpdateError(f"{source}: not valid JSON ({e}); a truncated download?") from None
    try:
        if kind == "service-tags":
            tags = ServiceTags.from_document(doc, source=source)
            return Checked(tags.change_number, tags.prefix_count, tags.tag_count)
        communities = BgpCommunities.from_document(doc, source=source)
        return Checked(None, communities.prefix_count, len(communities.communities))
    except (ServiceTagsError, CommunitiesError) as e:
        raise UpdateError(str(e)) from None


def _current(kind: Kind, dest: Path) -> Checked | None:
    """The file in place, if it can be read (a broken one is simply replaced)."""
    try:
        return check(kind, dest.read_bytes(), os.fspath(dest))
    except (OSError, UpdateError):
        return None


def _refuse_worse(new: Checked, old: Checked | None, source: str, dest: Path) -> None:
    if old is None:
        return
    older = new.change_number is not None and old.change_number is not None
    if older and new.change_number < old.change_number:  # type: ignore[operator]
        raise UpdateError(
            f"{source}: changeNumber {new.change_number} is older than {dest}'s "
            f"{old.change_number}; kept the current file (a stale mirror?)"
        )
    if new.prefix_count < old.prefix_count * MIN_PREFIX_RATIO:
        raise UpdateError(
            f"{source}: lists {new.prefix_count} prefixes, less than half of {dest}'s "
            f"{old.prefix_count}; kept the current file (a truncated or wrong download?)"
        )


# --------------------------------------------------------------------------- replacing


def update(kind: Kind, dest: Path, fetched: Fetched) -> Outcome:
    """Check the fetched file against the current one and swap it in atomically."""
    new = check(kind, fetched.data, fetched.source)
    old = _current(kind, dest)
    _refuse_worse(new, old, fetched.source, dest)
    try:
        if dest.read_bytes() == fetched.data:
            return Outcome(dest, fetched.source, new, old, replaced=False)
    except OSError:
        pass
    _replace(dest, fetched.data)
    return Outcome(dest, fetched.source, new, old, replaced=True)


def _replace(dest: Path, data: bytes) -> None:
    """Keep the current file as <dest>.previous, then rename the new one over it.

    Both steps are renames inside one directory, so the agent always finds a
    whole file at `dest`: the old one or the new one.
    """
    directory = dest.absolute().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dest.name}.")
    except OSError as e:
        raise UpdateError(f"{directory}: cannot write there: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if dest.exists():
            previous = dest.with_name(dest.name + PREVIOUS_SUFFIX)
            link = directory / f".{previous.name}.{os.getpid()}"
            link.unlink(missing_ok=True)
            os.link(dest, link)  # a second name for the current file, then moved into place
            os.replace(link, previous)
        os.replace(tmp, dest)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UpdateError(f"{dest}: cannot replace it: {e.strerror or e}") from None
