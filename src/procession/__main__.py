"""`python -m procession`: the `procession` command line.

`--version` is answered here, before the command line is imported: a core install (without
the `[cli]` extra's Typer and Rich) can still say which procession it is.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from procession import __version__

        print(f"procession {__version__}")
        return
    try:
        from procession.cli import main as cli
    except ImportError as exc:
        sys.exit(
            f"error: the procession command line needs its extra ({exc.name} is missing): "
            "pip install 'procession[cli]'"
        )
    cli()


if __name__ == "__main__":
    main()
