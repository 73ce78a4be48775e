"""A Python in which some packages are not installed, for tests that run a script in a fresh interpreter."""

from __future__ import annotations

import textwrap


def not_installed(missing: str) -> str:
    """The first lines of a ``python -c`` script: ``MISSING`` becomes the set of top-level package names that the
    Python expression ``missing`` gives (e.g. ``set(sys.argv[1].split(","))``), and from then on importing any of
    them fails as it does where the package is not installed."""
    return textwrap.dedent(f"""
        import importlib.abc, sys

        MISSING = {missing}

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in MISSING:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NotInstalled())
    """)
