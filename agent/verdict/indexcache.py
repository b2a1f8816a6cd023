"""An index built from a big input file, cached beside it: integer arrays and a JSON header.

`<file>.erpath-index` holds a magic line, one JSON line (the key that says
which version of the input it was built from, what the arrays are, their
CRC-32) and the arrays' bytes.  `read` returns None for anything it cannot
trust -- another key, another byte order, a short or corrupt file -- and the
caller builds the index again.  `write` is atomic (a temporary file renamed
over the old one) and returns False where the directory is read-only: the
caller keeps the index it built in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zlib
from array import array
from typing import Any

SUFFIX = ".erpath-index"
_MAGIC = b"erpath-index 1\n"
_HEADER_MAX_BYTES = 1 << 20

Sections = dict[str, array | bytes]


def path_for(source: str | os.PathLike[str]) -> str:
    return os.fspath(source) + SUFFIX


def read(path: str, key: dict[str, Any]) -> tuple[dict[str, Any], Sections] | None:
    """(meta, sections) if `path` is an intact index built for `key`; else None.

    Sections are read straight into their arrays (no copy of the whole file
    in memory), the CRC-32 accumulated on the way.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC) + _HEADER_MAX_BYTES)
            if not head.startswith(_MAGIC):
                return None
            end = head.find(b"\n", len(_MAGIC))
            if end < 0:
                return None
            header = json.loads(head[len(_MAGIC) : end])
            if header["key"] != key or header["byteorder"] != sys.byteorder:
                return None
            f.seek(end + 1)
            crc = 0
            sections: Sections = {}
            for name, typecode, nbytes in header["sections"]:
                if typecode == "bytes":
                    chunk: array | bytes = f.read(nbytes)
                    if len(chunk) != nbytes:
                        return None
                else:
                    chunk = array(typecode)
                    if nbytes % chunk.itemsize:
                        return None
                    chunk.fromfile(f, nbytes // chunk.itemsize)  # EOFError if short
                crc = zlib.crc32(chunk, crc)
                sections[name] = chunk
            if f.read(1) or crc != header["crc32"]:
                return None
            return header["meta"], sections
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        return None


def write(path: str, key: dict[str, Any], meta: dict[str, Any], sections: Sections) -> bool:
    """Store the index atomically; False if it cannot be written (read-only directory)."""
    chunks = [s if isinstance(s, bytes) else s.tobytes() for s in sections.values()]
    body = b"".join(chunks)
    header = {
        "key": key,
        "byteorder": sys.byteorder,
        "meta": meta,
        "sections": [
            [name, "bytes" if isinstance(s, bytes) else s.typecode, len(chunk)]
            for (name, s), chunk in zip(sections.items(), chunks, strict=True)
        ],
        "crc32": zlib.crc32(body),
    }
    line = json.dumps(header, separators=(",", ":")).encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + line + b"\n")
            f.write(body)
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
