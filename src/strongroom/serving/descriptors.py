"""Sizing a server process's file descriptor table before a burst needs it.

Linux grows a process's descriptor table by doubling it (64, 128, 256, … slots), and when the
table is shared by several threads, as in a worker (checkpointer, thread pool), each growth
waits for an RCU grace period: 8 to 17 ms measured here, inside the ``accept()`` or
``recvmsg()`` that needed the new slot, so on the event loop. A burst of logins is exactly when
a worker or login process first holds hundreds of connections. Growing the table once, at
start-up and while the process has one thread, costs nothing of the kind (a few KiB).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource

# Slots reserved at start-up: a worker holds a connection per client plus the burst's new
# ones until they are handed over; past this the table still grows, as before.
DESCRIPTOR_TABLE_SLOTS = 4096


def presize_descriptor_table(slots: int = DESCRIPTOR_TABLE_SLOTS) -> int:
    """Grow this process's descriptor table to at least ``slots`` entries (capped by the
    soft ``RLIMIT_NOFILE``) by duplicating a descriptor to the highest one, then closing it.
    Returns the highest descriptor number reached, or -1 when nothing could be done."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = slots - 1 if soft == resource.RLIM_INFINITY else min(slots, soft) - 1
    if highest <= 2:
        return -1
    probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # F_DUPFD takes the lowest free descriptor >= highest: the table grows to hold it.
        duplicate = fcntl.fcntl(probe, fcntl.F_DUPFD_CLOEXEC, highest)
    except OSError:  # limits changed under us, or no room: the table grows on demand instead
        return -1
    finally:
        os.close(probe)
    with contextlib.suppress(OSError):
        os.close(duplicate)
    return duplicate
