"""ASGI factory for ``read_path.py``'s what-if targets: Strongroom's own app with some of the
changes of ``read_path_whatif.py`` patched in, per worker process (src/ is not modified).

    uvicorn whatif_asgi:make_app --factory --app-dir bench   (read_path.py runs it)

``BENCH_WHATIF`` chooses the changes:

- ``freeze``: none of them, only change 7, ``gc.freeze()`` of the start-up heap;
- ``1-4``: cheaper code, same design (route order, lean endpoint, raw sqlite3 reads and audit
  appends, thread group commit);
- ``1-7``: 1-4, plus inline group commit on the event loop, flock-serialized writers with
  background WAL checkpoints, and ``gc.freeze()``.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_app() -> Any:
    import read_path_whatif

    from strongroom.api.asgi import make_app as strongroom_app

    level = os.environ.get("BENCH_WHATIF", "1-4")
    app = strongroom_app()
    if level in ("1-4", "1-7"):
        read_path_whatif.apply_all(app, inline_audit=level == "1-7")
    if level in ("freeze", "1-7"):
        # Change 7: move the start-up heap (~140k objects) out of the collector's reach; a
        # full collection of it pauses the event loop for ~40 ms.
        gc.collect()
        gc.freeze()
    return app
