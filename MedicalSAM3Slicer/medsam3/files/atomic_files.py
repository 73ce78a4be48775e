"""Result files that appear whole or not at all.

Every output of a run is first written to a hidden temporary file in its target's folder (same file name at the
end, so writers that choose the format from the extension still do), and all of them are moved into place only
when every one was written. A failure or a kill part-way leaves the targets as they were: no half-written file,
and no new file next to an old one from another run.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType


class AtomicOutputs:
    """Usage::

        with AtomicOutputs() as outputs:
            write_labelmap(outputs.path_for(labelmap_path), ...)
            write_seg_nrrd(outputs.path_for(seg_path), ...)
        # both targets are in place here; after an exception neither was touched
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}  # target -> temporary file

    def path_for(self, target: str | Path) -> Path:
        """Where to write ``target``'s content now; the folder is created if needed."""
        target = Path(target)
        if target in self._pending:
            return self._pending[target]
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".partial-{secrets.token_hex(4)}-{target.name}")
        self._pending[target] = temporary
        return temporary

    def commit(self) -> list[Path]:
        """Move every written temporary file onto its target; returns the targets."""
        missing = [str(t) for t, tmp in self._pending.items() if not tmp.exists()]
        if missing:
            self.discard()
            raise FileNotFoundError(f"nothing was written for {', '.join(missing)}")
        targets = list(self._pending)
        for target, temporary in self._pending.items():
            os.replace(temporary, target)
        self._pending.clear()
        return targets

    def discard(self) -> None:
        """Remove every temporary file; the targets stay as they were."""
        for temporary in self._pending.values():
            try:
                temporary.unlink()
            except FileNotFoundError:
                pass
        self._pending.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()
