"""Files of keys (the data keys of relais_kit.vault, the token keys of
relais_kit.tokenkeys): written whole or not at all, readable by their owner only, and
re-read when they change."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def stamp(stat: os.stat_result) -> tuple[int, ...]:
    """What changes when the file does: a replaced file is a new inode, and its change
    time moves even when a copy kept the old modification time and size."""
    return (stat.st_ino, stat.st_ctime_ns, stat.st_mtime_ns, stat.st_size)


def _temporary(path: Path, data: Any) -> Path:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    return temporary


def replace(path: Path, data: Any) -> None:
    """Writes atomically (a reader sees the old file or the new one), mode 0600."""
    os.replace(_temporary(path, data), path)


def create_once(path: Path, data: Any) -> None:
    """Writes `data` unless the file exists; two processes starting together end up
    with the same file, the first one's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    temporary = _temporary(path, data)
    try:
        os.link(temporary, path)  # atomic, and refused if the file appeared meanwhile
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
