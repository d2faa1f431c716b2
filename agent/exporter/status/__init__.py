"""The agent's status page: `/` as HTML and `/status.json`, two views of one model.

- `model.py`    the one adapter from the agent's results, history and health to the model dict (pure);
- `timeline.py` which upstream each target used over the last 24 h, from the history's changes (pure);
- `page.py`     the model as one self-contained HTML document (pure);
- `source.py`   the I/O edge: bounded history reads, the snapshot, a short cache; called by the server.
"""

from agent.exporter.status.model import HistoryExtract, Limits, status_model
from agent.exporter.status.page import render_page
from agent.exporter.status.source import StatusSource, read_history

__all__ = ["HistoryExtract", "Limits", "StatusSource", "read_history", "render_page", "status_model"]
