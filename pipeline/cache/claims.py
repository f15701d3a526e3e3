"""Claims on a cache's shards, so that two extraction processes never extract the same shard: one byte per
shard of a file beside the cache (`.NAME.claims`: Zarr warns about files inside a hierarchy it does not know),
under an exclusive POSIX record lock, which the kernel releases when the process ends (a SIGKILL never leaves a
stale claim) and NFS carries between nodes."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
_HELD = (errno.EAGAIN, errno.EACCES)


class ShardClaims:
    """Claims held for the life of this object's process (or until `close`). One descriptor for every claim:
    POSIX locks are dropped when any descriptor of the file closes in the process, so there is only ever one."""

    def __init__(self, cache: str | Path):
        cache = Path(cache)
        self.fd = os.open(cache.parent / f".{cache.name}.claims", os.O_RDWR | os.O_CREAT, 0o644)

    def claim(self, shards: list[int]) -> list[int]:
        """The shards of `shards` now claimed by this process; those another running process holds are left."""
        claimed = []
        for n, shard in enumerate(shards):
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, shard, os.SEEK_SET)
            except OSError as exc:
                if exc.errno in _HELD:
                    continue
                log.warning("shard claims are not supported here (%s): concurrent runs may extract a shard twice", exc)
                return claimed + shards[n:]
            claimed.append(shard)
        return claimed

    def close(self) -> None:
        os.close(self.fd)
