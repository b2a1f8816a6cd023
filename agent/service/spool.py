"""The durable on-disk spool of reports the collector has not acknowledged.

Every report enters the spool before it is sent, so a crash (even kill -9)
between measuring and acknowledging loses nothing.  One gzip file per report,
named by zero-padded seq so that a directory listing is replay order; each is
written to a temporary name, fsynced and renamed, so a file is either whole
or absent.  The spool is bounded by size and age: when over, the oldest
reports go first, and the count of dropped reports survives restarts (it is
reported in every report's health block).

A full disk never stops the agent: `put` drops the oldest reports until the
new one fits (counted like any other drop), and a count that cannot be
written is kept in memory and written with the next drop that fits.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.service.durable import write_durably

log = logging.getLogger("erpath.agent.spool")

_SUFFIX = ".json.gz"


@dataclass(frozen=True, slots=True)
class SpooledReport:
    seq: int
    report_id: str
    path: Path

    def body_gzip(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, max_age_s: float):
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        directory.mkdir(parents=True, exist_ok=True)
        self._dropped_path = directory / "dropped"
        self._dropped_total = self._read_dropped()
        # A crash mid-write leaves a temporary file: it was never acknowledged
        # nor complete, and its report is re-measured next cycle anyway.
        for tmp in directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ state

    @property
    def dropped_total(self) -> int:
        return self._dropped_total

    def _read_dropped(self) -> int:
        try:
            return int(self._dropped_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _add_dropped(self, n: int) -> None:
        self._dropped_total += n
        try:
            write_durably(self._dropped_path, f"{self._dropped_total}\n".encode())
        except OSError as e:
            log.error(
                "event=dropped_count_not_saved dropped_total=%d error=%s; kept in memory",
                self._dropped_total,
                e,
            )

    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX))

    def __len__(self) -> int:
        return len(self._files())

    # ------------------------------------------------------------------ writing

    def put(self, seq: int, report_id: str, body_json: bytes) -> SpooledReport | None:
        """Store one report durably; then enforce the bounds (oldest dropped first).

        When the disk is full the oldest reports are dropped (and counted) until
        this one fits; None when it does not fit in an empty spool either (it is
        then counted as dropped too).
        """
        name = f"{seq:020d}-{report_id}{_SUFFIX}"
        path = self.directory / name
        # mtime=0 keeps the bytes identical for identical reports.
        data = gzip.compress(body_json, compresslevel=6, mtime=0)
        while True:
            try:
                write_durably(path, data)
                break
            except OSError as e:
                older = [p for p in self._files() if p != path]
                if not older:
                    self._add_dropped(1)
                    log.error(
                        "event=spool_full seq=%d error=%s; report dropped, the spool is empty",
                        seq,
                        e,
                    )
                    return None
                older[0].unlink(missing_ok=True)
                self._add_dropped(1)
                log.error(
                    "event=spool_full seq=%d error=%s; dropped the oldest report %s",
                    seq,
                    e,
                    older[0].name,
                )
        self.enforce_bounds()
        return SpooledReport(seq, report_id, path)

    def enforce_bounds(self, now: float | None = None) -> int:
        """Drop reports over the age bound, then the oldest while over the size bound."""
        now = time.time() if now is None else now
        files = self._files()
        sizes = {}
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            sizes[p] = (st.st_size, st.st_mtime)
        drop: list[Path] = [p for p, (_, mtime) in sizes.items() if now - mtime > self.max_age_s]
        total = sum(size for p, (size, _) in sizes.items() if p not in drop)
        for p in files:
            # Always keep the newest report, even if it alone exceeds the bound.
            if total <= self.max_bytes or p == files[-1]:
                break
            if p in drop or p not in sizes:
                continue
            drop.append(p)
            total -= sizes[p][0]
        for p in drop:
            p.unlink(missing_ok=True)
        if drop:
            self._add_dropped(len(drop))
            log.warning(
                "event=spool_dropped count=%d spool_reports=%d max_mb=%.1f max_age_h=%.1f",
                len(drop),
                len(files) - len(drop),
                self.max_bytes / 1e6,
                self.max_age_s / 3600,
            )
        return len(drop)

    # ------------------------------------------------------------------ reading

    def pending(self) -> Iterator[SpooledReport]:
        """Spooled reports, oldest (lowest seq) first."""
        for p in self._files():
            stem = p.name[: -len(_SUFFIX)]
            seq_text, _, report_id = stem.partition("-")
            if not seq_text.isdigit():
                continue
            yield SpooledReport(int(seq_text), report_id, p)

    def ack(self, item: SpooledReport) -> None:
        item.path.unlink(missing_ok=True)

    def reject(self, item: SpooledReport) -> None:
        """A report the collector refused for good (4xx): counted as dropped."""
        item.path.unlink(missing_ok=True)
        self._add_dropped(1)
