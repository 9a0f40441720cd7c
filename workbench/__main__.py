"""``python -m workbench``: see `workbench._cli`."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
