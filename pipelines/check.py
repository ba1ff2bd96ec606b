"""Check a params file against the schema (components/schema.py) without running anything.

    python -m pipelines.check [params.yaml]   one line per bad key, exit status 1; else a summary
    python -m pipelines.check --markdown      every key and what it takes (PARAMETERS.md)

Every stage runs the same check on the sections it reads before it starts; this checks them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import display_name
from components.errors import ConfigError
from components.schema import checked_params, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="?", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("--markdown", action="store_true", help="print every key and what it takes, as Markdown")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
        return 0
    try:
        params = checked_params(path=Path(args.params))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{display_name(Path(args.params))}: valid; {len(params['models'])} model(s): {', '.join(params['models'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
