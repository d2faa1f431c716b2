"""Path history: one SQLite row per upstream change, under `agent.state_dir` (README "How it measures").

- `record.py`  the row (`PathChange`) and its JSON columns;
- `schema.py`  versioned schema, migrations keyed by `PRAGMA user_version`;
- `store.py`   the one place SQLite is opened for writing: WAL, corruption handling, retention;
- `writer.py`  the single writer thread and its bounded queue; `record(change)` for the event loop;
- `query.py`   read-only access for `nkprobe history`, durations, target selection.
"""

from agent.history.query import HistoryReader, NoHistory, parse_duration
from agent.history.record import PathChange, hops_from_path
from agent.history.store import HISTORY_FILE, HistoryStore
from agent.history.writer import HistoryStatus, HistoryWriter

__all__ = [
    "HISTORY_FILE",
    "HistoryReader",
    "HistoryStatus",
    "HistoryStore",
    "HistoryWriter",
    "NoHistory",
    "PathChange",
    "hops_from_path",
    "parse_duration",
]
