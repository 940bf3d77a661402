"""The ``t1046lab`` command.

Each sub-command lives in its own module of :mod:`t1046lab.commands` (an ``add_parser``
function and an ``ORDER``) and is a thin layer over the library: parse arguments, call the public
function, write the result, print a short summary. Errors in the input end the command
with exit status 2 and one line naming the file, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from . import __version__

__all__ = ["main", "build_parser"]

log = logging.getLogger("t1046lab")




def _command_modules() -> list:
    """The modules of :mod:`t1046lab.commands`, each adding one sub-command, in ``ORDER``."""
    from . import commands

    modules = [
        importlib.import_module(f"{commands.__name__}.{info.name}")
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t1046lab",
        description="Detect network service discovery (MITRE ATT&CK T1046) in flow, packet, "
        "cloud, container and endpoint telemetry.",
    )
    parser.add_argument("--version", action="version", version=f"t1046lab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``t1046lab`` console script."""
    from .exceptions import FormatDetectionError, ParseError
    from .schema import SchemaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ParseError, FormatDetectionError, SchemaError, FileNotFoundError, IsADirectoryError, ValueError, TypeError) as exc:
        if args.verbose > 1:
            raise
        print(f"t1046lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (``| head``): not an error of ours.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
