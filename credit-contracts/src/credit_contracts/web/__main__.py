"""`python -m credit_contracts.web ...` is `credit-contracts serve ...`."""

from __future__ import annotations

import sys

from credit_contracts.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])
