"""Keep the server's resident memory close to what its memory budget counts.

glibc's malloc gives each thread that allocates its own arena (up to 8 per core) and keeps memory freed there for
that arena's reuse. A server whose thread pool decodes volumes and builds masks in many threads then holds freed
blocks in every arena: under 8 parallel uploaders and 4 propagating clients the resident memory grew about 10 %
beyond what the budget counted (tests/apps/server/test_server_stress.py, a quiet machine), while with two arenas it stayed
well within (+246 MiB of a 320 MiB budget). The server therefore caps the arenas when it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>
SERVER_ARENAS = 2


def limit_malloc_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; returns whether it applied (glibc on Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt: nothing to cap
        return False
