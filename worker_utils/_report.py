"""What each worker was given, and where the servers are, for the terminal summary."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from worker_utils._util import mask_password

#: The resources that get a column in the table, in order, with their headers.
COLUMNS = {
    "tmp": "temp dir",
    "ports": "ports",
    "postgres": "postgres",
    "redis": "redis",
    "sqlite": "sqlite",
}
#: Lease at most this many ports and the table lists them; more are shown as a span.
_LISTED_PORTS = 4


class WorkerReport:
    """The resources one worker received, sent to the controller at session end."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.facts: dict[str, list[Any]] = {}
        self.planned: dict[str, str] = {}
        self.servers: list[list[str]] = []
        self.waits: dict[str, list[Any]] = {}

    def note(self, kind: str, value: Any) -> None:
        """Record that this worker was given ``value`` of ``kind`` (e.g. a port)."""
        values = self.facts.setdefault(kind, [])
        if value not in values:
            values.append(value)

    def plan(self, kind: str, value: str) -> None:
        """Record what this worker gets of ``kind`` when its tests use it.

        The table shows it for a worker that used none, so that every worker has
        a row whichever tests it happened to run.
        """
        self.planned[kind] = value

    def note_server(self, kind: str, url: str, origin: str) -> None:
        """Record the server of ``kind`` this worker used, with its password masked."""
        server = [kind, mask_password(url), origin]
        if server not in self.servers:
            self.servers.append(server)

    def note_wait(self, kind: str, seconds: float, what: str) -> None:
        """Record that this worker waited ``seconds`` for ``what``, such as ``a free database``.

        The summary counts, per ``kind``, the workers that waited and how long.
        """
        self.waits[kind] = [seconds, what]

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data that xdist can send to the controller."""
        return {
            "worker": self.worker,
            "facts": self.facts,
            "planned": self.planned,
            "servers": self.servers,
            "waits": self.waits,
        }


def _workers(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted(reports, key=lambda w: (len(w), w))


def _servers(reports: Mapping[str, Mapping[str, Any]]) -> list[Sequence[str]]:
    found: list[Sequence[str]] = []
    for worker in _workers(reports):
        for server in reports[worker].get("servers", ()):
            if server not in found:
                found.append(server)
    return found


def _ports(ports: Sequence[int]) -> str:
    if len(ports) <= _LISTED_PORTS:
        return ", ".join(str(port) for port in ports)
    return f"{len(ports)} between {min(ports)} and {max(ports)}"


def _in_tmp(value: str, tmp: str) -> str:
    # A file in the worker's directory: the temp dir column already says where that is.
    return f"<temp dir>{value[len(tmp) :]}" if tmp and value.startswith(tmp + "/") else value


def _cell(kind: str, values: Sequence[Any], tmp: str) -> str:
    if kind == "ports":
        return _ports(values)
    if kind == "tmp":
        return ", ".join(str(value) for value in values)
    return ", ".join(_in_tmp(str(value), tmp) for value in values)


def _notes(report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for kind, values in report["facts"].items():
        if kind not in COLUMNS:
            yield kind, ", ".join(str(value) for value in values)


def summary_lines(reports: Mapping[str, Mapping[str, Any]], *, table: bool) -> Iterator[str]:
    """Yield the summary: with ``table``, a row per worker, a column per kind of resource used.

    Without ``table``, one line per worker lists what its tests used. Both end
    with one line per server. Nothing is yielded when no test used a resource.
    """
    workers = _workers(reports)
    used = [kind for kind in COLUMNS if any(kind in reports[w]["facts"] for w in workers)]
    if "sqlite" in used and "tmp" not in used:
        used.insert(0, "tmp")  # the SQLite file is shown in the worker's directory
    servers = _servers(reports)
    noted = any(list(_notes(reports[w])) or reports[w].get("waits") for w in workers)
    if not used and not servers and not noted:
        return
    if table:
        yield from _table(reports, workers, used)
    else:
        for worker in workers:
            facts = reports[worker]["facts"]
            tmp = str(facts.get("tmp", [""])[0])
            parts = [f"{COLUMNS[k]} {_cell(k, facts[k], tmp)}" for k in used if k in facts]
            parts += [f"{kind} {text}" for kind, text in _notes(reports[worker])]
            yield f"worker_utils: {worker}: {'; '.join(parts) or 'no resources'}"
    yield from _waits(reports, workers)
    for kind, url, origin in servers:
        yield f"worker_utils: {kind} server {url} ({origin})"


def _waits(reports: Mapping[str, Mapping[str, Any]], workers: list[str]) -> Iterator[str]:
    """One line per kind of resource some worker waited for: how many, how long."""
    kinds = [kind for w in workers for kind in reports[w].get("waits", {})]
    for kind in dict.fromkeys(kinds):
        waited = {w: reports[w].get("waits", {}).get(kind) for w in workers}
        users = [w for w in workers if kind in reports[w]["facts"] or waited[w]]
        waits = [waited[w] for w in users if waited[w]]
        seconds = [float(wait[0]) for wait in waits]
        yield (
            f"worker_utils: {kind}: {len(waits)} of {len(users)} "
            f"worker{'s' if len(users) != 1 else ''} waited for {waits[0][1]}: "
            f"{max(seconds):.2f}s at most, {sum(seconds):.2f}s in all"
        )


def _table(
    reports: Mapping[str, Mapping[str, Any]], workers: list[str], used: list[str]
) -> Iterator[str]:
    rows = [["worker", *(COLUMNS[kind] for kind in used)]]
    for worker in workers:
        facts, planned = reports[worker]["facts"], reports[worker].get("planned", {})
        tmp = str((facts.get("tmp") or [planned.get("tmp", "")])[0])
        row = [worker]
        for kind in used:
            if kind in facts:
                row.append(_cell(kind, facts[kind], tmp))
            else:
                row.append(_in_tmp(planned.get(kind, "-"), tmp) if kind != "tmp" else tmp or "-")
        rows.append(row)
    header = f"worker_utils: {len(workers)} worker{'s' if len(workers) != 1 else ''}"
    if "tmp" in used:
        # Every worker's directory is <run dir>/workers/<id>: name the run directory once.
        run_dir = os.path.dirname(os.path.commonpath([row[1] for row in rows[1:]]))
        header += f", run directory {run_dir}"
        for row in rows[1:]:
            row[1] = os.path.relpath(row[1], run_dir)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    yield header
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        yield ("  " + "  ".join(cells)).rstrip()
    for worker in workers:
        for kind, text in _notes(reports[worker]):
            yield f"  {worker} {kind}: {text}"
