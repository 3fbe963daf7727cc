"""Keep stdout for a protocol: the one place that takes fds 0 and 1 from the process.

A stdio server (MCP) owns its stdin and stdout; everything else the process writes, from
its own ``print`` to a child process or a thread printing at exit, must land elsewhere.
:func:`claim_stdio` moves the protocol to private copies of the two descriptors, points
fd 1 and ``sys.stdout`` at stderr and fd 0 at the null device, for the rest of the
process. It imports nothing, so a command can call it before any other import.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

__all__ = ["Wire", "claim_stdio"]


class Wire(NamedTuple):
    """The protocol's own descriptors: what was fd 0 and fd 1."""

    read_fd: int
    write_fd: int


_claimed: Wire | None = None


def claim_stdio() -> Wire:
    """Take stdin and stdout for a protocol (once per process; later calls return the same)."""
    global _claimed
    if _claimed is None:
        if sys.stdout is not None:
            sys.stdout.flush()
        # os.dup gives descriptors above 2 that children do not inherit.
        wire = Wire(os.dup(0), os.dup(1))
        os.dup2(2, 1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdout = sys.stderr
        _claimed = wire
    return _claimed
