"""The `nkprobe` command line: argparse subcommands and the composition root.

Each subcommand lives in `agent/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`.
Those modules import nothing heavy at module level (scapy, pyroute2, prometheus_client are imported
inside `run`), so `nkprobe --help` and `nkprobe trace` start fast on a Raspberry Pi.

Exit status (README "Commands"): 0 success, 1 a runtime fault of the agent, 2 a usage, configuration or
environment error, always with one line on stderr that says what to do.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from agent import __version__

# Only commands that work are registered here (name -> module, help line), in the contract's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "trace": ("agent.commands.trace", "Paris traceroute to a target, tagged with the upstream it crosses"),
    "ping": ("agent.commands.ping", "latency probes (ICMP echo or TCP SYN): RTTs, loss and a summary"),
    "classify": ("agent.commands.classify", "upstream tag of RIPE Atlas traceroute results, with evidence"),
    "run": ("agent.commands.run", "the agent: scheduled probes, path history, Prometheus metrics"),
    "check-config": ("agent.commands.check_config", "validate a config file and list every problem"),
    "history": ("agent.commands.history", "the recorded upstream changes, oldest first"),
    "asn": ("agent.commands.asn", "IP-to-AS data: asn update (refresh from public sources), lookup, info"),
    "bgp": (
        "agent.commands.bgp",
        "the destination AS's BGP neighbours per /24: saved RIPEstat files, or --live",
    ),
    "lab": ("agent.commands.lab", "the simulated network in namespaces: lab up|down|flip|status"),
    "demo": ("agent.commands.demo", "the lab plus the agent running against it, until interrupted"),
}


def _columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil: $COLUMNS if it is a positive number,
    else the width of the terminal on stdout, else 80 (the same rules and fallback).

    argparse asks shutil for it in every HelpFormatter, and builds one per add_argument; importing
    shutil (with bz2, lzma and fnmatch) was 2 ms of every command's start-up (bench/startup.py).
    """
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized by `_columns` (argparse takes 2 off the terminal's width too)."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message to one line plus a hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The whole parser; with `only` naming a command, just that command's parser, its module imported
    and given its arguments (`only=""`: every command's parser, no module).

    Importing every command module costs start-up time a Raspberry Pi Zero feels, so `main` imports only
    the one it runs; `nkprobe --help` needs none of them (the help lines live in COMMANDS). A command
    that runs needs no other command's parser either: each costs argparse three message-catalogue
    lookups (gettext), 0.3 ms, and `nkprobe trace` once built ten of them.
    """
    parser = _Parser(
        prog="nkprobe",
        description="Measure which upstream carries North Korea's Internet.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nkprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules: dict[str, ModuleType] = {}
    for name, (module_name, help_line) in COMMANDS.items():
        if only and name != only:
            continue
        command_parser = sub.add_parser(
            name, help=help_line, description=help_line, formatter_class=_HelpFormatter
        )
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            modules[name] = module
    return parser, modules


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the line: the first word that is not an option (top level has no values)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words == ["--version"]:  # what a supervisor or a package check asks most: no parser, no imports
        print(f"nkprobe {__version__}")
        return 0
    from agent.commands._collector import collector_paused
    from agent.errors import NkprobeError  # (logging comes with it: only for a command that runs)

    with collector_paused():  # the command's module and parser: objects for the process's lifetime
        parser, modules = build_parser(only=_command_in(words) or "")
        args = parser.parse_args(words)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = modules[args.command].run(args)
    except NkprobeError as exc:
        print(f"nkprobe {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `nkprobe history | head`: the reader left; not our fault.
        return 0
    if argv is None and getattr(modules[args.command], "EXIT_WITHOUT_TEARDOWN", False):
        return _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> int:
    """End the process now with `code`, its output flushed, without the interpreter's teardown.

    For a command that declares EXIT_WITHOUT_TEARDOWN (`nkprobe trace`: nothing of it is left to run,
    close or write once it returns, its threads joined or daemons) and only when it runs as the program
    (`argv` None: the console script or `python -m agent`; a test that calls main in-process gives argv).
    Python's exit would free every object module by module, 2-3 ms after the last reply that nobody
    waits for (bench/startup.py); os._exit leaves that to the kernel, as mypy ends its runs. Flushing is
    what the exit would still have done for us; if it fails (a closed pipe), the usual exit runs and
    reports it as before.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return code
    os._exit(code)
