"""`spp-scl`: one command, a subcommand per verb. Each verb lives in its own module of this package.

    spp-scl extract --data data/mvsa-single --dataset mvsa-single     # the one-time encoder pass
    spp-scl train --cache cache/files/mvsa-single.h5 --preset mvsa-single
    spp-scl <verb> --help

A verb module holds `HELP` (one line), `add_arguments(parser)` and `run(args) -> exit status`; it imports the
library (torch and the rest) only inside `run`, so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import logging
import re
import sys

from spp_scl import __version__
from spp_scl.core.errors import EXIT_CODES, EXIT_CRASH, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_STORAGE, ToolError

VERBS = (
    "extract",
    "inspect",
    "train",
    "sweep",
    "tables",
    "compare",
    "predict",
    "evaluate",
    "report",
    "export",
    "demo",
)
MODULES = {"inspect": "inspect_cache"}  # `inspect` would shadow the standard library's module of that name

PACKAGES = ("spp_scl",)  # the loggers the command line configures (every module of the tool is under it)


def verb_module(verb: str):
    return importlib.import_module(f"spp_scl.cli.{MODULES.get(verb, verb)}")


def build_parser() -> argparse.ArgumentParser:
    statuses = "\n".join(f"  {code:3d}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="spp-scl",
        description="Image-text sentiment analysis around SPP-SCL: frozen encoders cached once, heads trained "
        "from the cache. `spp-scl VERB --help` explains each verb.",
        epilog=f"exit statuses:\n{statuses}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spp-scl {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        module = verb_module(verb)
        sub = verbs.add_parser(
            verb,
            help=module.HELP,
            description=module.__doc__,
            epilog=f"exit statuses:\n{statuses}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_verbosity(sub)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run, parser=sub)  # verbs report bad values with parser.error (status 2)
    return parser


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=logging.DEBUG,
        dest="log_level",
        help="more detail (debug messages)",
    )
    group.add_argument(
        "-q", "--quiet", action="store_const", const=logging.WARNING, dest="log_level", help="warnings and errors only"
    )
    parser.set_defaults(log_level=logging.INFO)


def configure_logging(level: int) -> None:
    """Messages to stderr (results go to stdout), plain for info, prefixed for warnings and errors."""

    class Plain(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Plain("%(message)s"))
    for name in PACKAGES:
        package_logger = logging.getLogger(name)
        package_logger.handlers[:] = [handler]
        package_logger.setLevel(level)
        package_logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """The `spp-scl` command: parse, set up logging, run the verb; expected failures become one line and a status."""
    args, unknown = build_parser().parse_known_args(negative_values_joined(sys.argv[1:] if argv is None else argv))
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}{option_hint(args.parser, unknown)}")
    configure_logging(args.log_level)
    return run_verb(args)


# A value that starts with '-' and a digit (-2,-1 or -0.5): never an option of this tool.
NEGATIVE_VALUE = re.compile(r"-\d[\d.,eE+-]*")


def negative_values_joined(argv: list[str]) -> list[str]:
    """`--text-layers -2,-1` -> `--text-layers=-2,-1`: argparse takes a word that starts with '-' for an option
    unless it is one negative number, so a list of negative numbers would need the `=` form; this writes it."""
    joined: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            return joined + argv[index:]
        previous = joined[-1] if joined else ""
        if previous.startswith("--") and "=" not in previous and NEGATIVE_VALUE.fullmatch(word):
            joined[-1] = f"{previous}={word}"
        else:
            joined.append(word)
    return joined


def option_hint(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """The hint for a mistyped option: "; did you mean --batch-size?" for the first one close to one of the verb's."""
    options = [name for action in parser._actions if action.help != argparse.SUPPRESS for name in action.option_strings]
    for word in unknown:
        close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1) if word.startswith("--") else []
        if close:
            return f"; did you mean {close[0]}?"
    return ""


def run_verb(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; a rerun resumes", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:  # a file that cannot be read or written: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORAGE if error.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_INPUT
    except (
        Exception
    ) as error:  # a bug: its traceback, and a status no expected outcome uses (predict's 1 means partial)
        import traceback

        traceback.print_exc()
        print(f"error: unexpected {type(error).__name__} (a bug; the traceback is above)", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
