"""trace, run, classify and asn all tag with `agent.asn.configured_table` (issue 12)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from agent.asn import ANNOUNCED_FILE, configured_table


def _config(tmp_path: Path, files: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(asn=SimpleNamespace(files=files), asn_update_dir=str(tmp_path / "asn"))


def test_without_an_update_the_builtin_table_tags(tmp_path: Path) -> None:
    table = configured_table(_config(tmp_path))
    assert table.asn("219.158.3.1") == 4837
    assert "built-in" in table.description


def test_an_update_replaces_the_builtin_table_and_extra_files_win_ties(tmp_path: Path) -> None:
    (tmp_path / "asn").mkdir()
    (tmp_path / "asn" / ANNOUNCED_FILE).write_text("188.43.0.0\t16\t20485\n")
    extra = tmp_path / "extra.pfx2as"
    extra.write_text("188.43.225.0\t24\t64500\n")
    table = configured_table(_config(tmp_path), [extra])
    assert table.asn("188.43.1.1") == 20485  # the update's
    assert table.asn("219.158.3.1") is None  # the built-in table is not underneath a fresh update
    assert table.asn("188.43.225.153") == 64500  # --asn-file, more specific
    assert "built-in" not in table.description


def test_trace_run_classify_and_asn_call_the_same_loader() -> None:
    # One loader for every command (today's bug: trace loaded without the updated directory). `trace`,
    # `run` (agent/agent.py) and `classify` tag with the one Tagger, which loads its table there; `asn`
    # looks addresses up in the same table.
    root = Path(__file__).resolve().parents[2] / "agent"
    for name in ("commands/trace.py", "agent.py", "commands/classify.py"):
        text = (root / name).read_text()
        assert "Tagger.from_config(" in text, name
        assert "load_table(" not in text and "configured_table(" not in text, name
    for name in ("classify/tagger.py", "commands/asn.py"):
        text = (root / name).read_text()
        assert "configured_table(" in text and "load_table(" not in text, name
