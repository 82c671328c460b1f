"""A disk that fills up under a running server: a tmpfs of a few pages, mounted in a mount
namespace of the server's own, which a test fills and empties again.

Faithful where it matters: ``AUDIT_FILE`` is a regular file on a real file system, opened when
the server started; once the file system is full, writes fail with ENOSPC, or stop partway
through a line when the last free bytes run out, as on a full ``/var/log``. (``/dev/full`` is
a character device, which ``AUDIT_FILE`` refuses; an ``RLIMIT_FSIZE`` would fail the
database's own writes as well.) Like a real disk, a full tmpfs still takes writes that fit in
the last page a file already holds: a test sends requests until the first 503.

Nothing is mounted on the host: the mount lives in the server's namespace (``unshare
--mount``, inside a user namespace when not root) and the test reaches it through
``/proc/<pid>/root``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

_MOUNT_THEN_RUN = 'mount -t tmpfs -o size={kib}k,mode=0700 tmpfs "$0" && exec "$@"'


class TinyDisk:
    """A ``size_kib`` tmpfs at ``mountpoint`` for the processes started through
    :meth:`wrapper`."""

    def __init__(self, mountpoint: Path, size_kib: int = 64) -> None:
        self.mountpoint = mountpoint
        self.size_kib = size_kib
        mountpoint.mkdir(parents=True, exist_ok=True)

    def wrapper(self) -> list[str]:
        """The command prefix that runs a command with the tmpfs mounted."""
        if os.geteuid() == 0:
            unshare = ["unshare", "--mount", "--propagation", "private"]
        else:
            unshare = ["unshare", "--user", "--map-root-user", "--mount"]
        return [
            *unshare,
            "sh",
            "-c",
            _MOUNT_THEN_RUN.format(kib=self.size_kib),
            str(self.mountpoint),
        ]

    def unavailable(self) -> str | None:
        """Why this machine cannot mount it (no mount namespaces for us), or None."""
        try:
            probe = subprocess.run(
                [*self.wrapper(), "true"], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError as exc:
            return f"unshare cannot run: {exc}"
        return None if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"

    def seen_by(self, pid: int) -> Path:
        """The mount as process ``pid`` sees it (the test's way in)."""
        return Path(f"/proc/{pid}/root") / self.mountpoint.relative_to("/")

    def fill(self, pid: int) -> None:
        """Take every free page."""
        with (self.seen_by(pid) / "filler").open("wb", buffering=0) as filler:
            chunk = b"\0" * 4096
            try:
                while True:
                    filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
            with contextlib.suppress(OSError):  # the last bytes of a partial page
                while True:
                    filler.write(b"\0")

    def empty(self, pid: int) -> None:
        """Give the pages back."""
        (self.seen_by(pid) / "filler").unlink()
