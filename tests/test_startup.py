"""What keeps `nkprobe trace` quick to start and to exit (issue 25; bench/startup.py measures it)."""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_target_check_comes_before_the_engine_and_the_parser_needs_no_shutil() -> None:
    # The resolver check starts once the target is allowed, while the engine's modules (asyncio with
    # them) load; argparse would import shutil for the terminal's width; ctypes is for setns on 3.11.
    code = (
        "import sys\n"
        "from agent import cli\n"
        "cli.build_parser(only='trace')[0].parse_args(['trace', '175.45.176.71'])\n"
        "from agent.commands._probing import config_and_target\n"
        "from agent.classify import rdns\n"
        "config_and_target(None, '175.45.176.71')\n"
        "early = sorted(m for m in ('asyncio', 'shutil', 'ctypes', 'agent.net.engine') if m in sys.modules)\n"
        "import agent.probers.base\n"
        "print(early, 'asyncio' in sys.modules)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "True"]


@pytest.mark.parametrize("columns", [None, "100", "0", "wide"])
def test_the_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    from agent import cli

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setenv("LINES", "40")  # shutil asks the terminal only when one of the two is unset
    assert cli._columns() == shutil.get_terminal_size().columns


def test_a_command_builds_only_its_own_parser() -> None:
    from agent import cli

    parser, modules = cli.build_parser(only="trace")
    assert list(modules) == ["trace"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["trace"]
    everything, none = cli.build_parser(only="")
    sub = next(a for a in everything._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS) and none == {}


def test_the_collector_is_off_for_the_command_and_back_after_it() -> None:
    from agent.commands import trace

    assert gc.isenabled()
    with pytest.raises(RuntimeError), trace.collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("the command failed")
    assert gc.isenabled() and trace._freeze_registered
    gc.disable()  # a caller that had it off keeps it off
    try:
        with trace.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip


def test_a_probing_command_loads_asyncio_without_ssl_and_ssl_still_loads_after() -> None:
    code = (
        "import sys\n"
        "from agent.commands._probing import import_asyncio_without_ssl\n"
        "import_asyncio_without_ssl()\n"
        "import asyncio\n"
        "print('ssl' in sys.modules, asyncio.base_events.ssl is None)\n"
        "asyncio.run(asyncio.sleep(0))\n"
        "import ssl\n"
        "print(ssl.PROTOCOL_TLS_CLIENT is not None)\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "True"]
    # A process that loaded ssl first keeps TLS in asyncio.
    proc = run_python(
        "import ssl\nfrom agent.commands._probing import import_asyncio_without_ssl\n"
        "import_asyncio_without_ssl()\nimport asyncio\nprint(asyncio.base_events.ssl is ssl)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]


def test_the_collector_comes_back_without_a_collection_of_what_the_pause_made() -> None:
    from agent.commands._collector import collector_paused

    started: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    with collector_paused():
        made = [[] for _ in range(5000)]  # 7 times the youngest generation's threshold
    gc.callbacks.append(seen)
    try:
        more = [[] for _ in range(100)]  # re-enabled as it was, this would start a collection
    finally:
        gc.callbacks.remove(seen)
    assert gc.isenabled() and started == [] and len(made) + len(more) == 5100


FAKE_COMMAND = """\
import atexit, sys, types
from agent import cli
module = types.ModuleType("fakecmd")
module.add_arguments = lambda parser: None
def run(args):
    print("out", end="")
    return 3
module.run = run
module.EXIT_WITHOUT_TEARDOWN = {flag}
sys.modules["fakecmd"] = module
cli.COMMANDS["fake"] = ("fakecmd", "a command")
atexit.register(lambda: print(" teardown", end=""))
print(f"[{{cli.main(['fake'])}}]", end="")  # in-process, as a test calls it: returns
sys.argv = ["nkprobe", "fake"]
sys.exit(cli.main())
"""


@pytest.mark.parametrize("flag", [True, False])
def test_a_command_that_declares_it_ends_the_program_without_teardown(flag: bool) -> None:
    proc = run_python(FAKE_COMMAND.format(flag=flag))
    assert proc.returncode == 3, proc.stderr
    # Its output flushed, the exit status kept; the atexit hooks (the teardown) skipped only when run
    # as the program by a command that declares it.
    assert proc.stdout == ("out[3]out" if flag else "out[3]out teardown")


def test_the_pause_leaves_what_another_froze_frozen() -> None:
    from agent.commands._collector import collector_paused

    kept = [[] for _ in range(100)]
    gc.freeze()  # as agent.agent.freeze_heap does in `nkprobe run`
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            pass
        assert gc.get_freeze_count() == frozen and gc.isenabled() and kept
    finally:
        gc.unfreeze()


def test_nothing_before_the_first_probe_compiles_an_init_but_the_per_packet_values() -> None:
    # A dataclass's generated __init__ is compiled from a string at every start (about 0.2 ms each,
    # Python 3.11): on the probing path of `nkprobe trace` only values made per reply or per result
    # may have one.
    code = (
        "import sys, dataclasses\n"
        "from agent.commands._probing import config_and_target, import_asyncio_without_ssl\n"
        "import_asyncio_without_ssl()\n"
        "import agent.probers.base, agent.net.engine, agent.probers\n"
        "seen = set()\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    if not name.startswith('agent.'):\n"
        "        continue\n"
        "    for value in vars(mod).values():\n"
        "        if not isinstance(value, type) or not dataclasses.is_dataclass(value):\n"
        "            continue\n"
        "        init = value.__dict__.get('__init__')\n"
        "        compiled = init is not None and init.__code__.co_filename == '<string>'\n"
        "        if value.__module__ == name and compiled:\n"
        "            seen.add(value.__qualname__)\n"
        "print(' '.join(sorted(seen)))\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) <= {"Hop", "MatchKey", "PingResult", "SocketSet"}, proc.stdout
