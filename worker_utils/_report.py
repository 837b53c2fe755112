"""What each worker was given, for the terminal summary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class WorkerReport:
    """The resources one worker received, sent to the controller at session end."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.facts: dict[str, list[Any]] = {}

    def note(self, kind: str, value: Any) -> None:
        """Record that this worker was given ``value`` of ``kind`` (e.g. a port)."""
        values = self.facts.setdefault(kind, [])
        if value not in values:
            values.append(value)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data that xdist can send to the controller."""
        return {"worker": self.worker, "facts": self.facts}

    @staticmethod
    def summary_lines(reports: Mapping[str, Mapping[str, Any]], *, verbose: bool) -> Iterator[str]:
        """Yield one summary line, or with ``verbose`` one line per worker and resource."""
        workers = sorted(reports, key=lambda w: (len(w), w))
        if not any(reports[w]["facts"] for w in workers):
            return
        if not verbose:
            parts = [f"{w} ({_brief(reports[w]['facts'])})" for w in workers]
            yield f"worker_utils: {len(workers)} worker(s): " + "; ".join(parts)
            return
        yield f"worker_utils: {len(workers)} worker(s)"
        for w in workers:
            facts = reports[w]["facts"]
            if not facts:
                yield f"  {w}: no resources"
            for kind, values in facts.items():
                yield f"  {w} {kind}: {', '.join(str(v) for v in values)}"


def _brief(facts: Mapping[str, list[Any]]) -> str:
    if not facts:
        return "no resources"
    parts = []
    for kind, values in facts.items():
        if kind == "ports":
            parts.append(f"{len(values)} port{'s' if len(values) != 1 else ''}")
        elif kind == "tmp":
            parts.append("tmp")
        else:
            parts.append(f"{kind} {', '.join(str(v) for v in values)}")
    return ", ".join(parts)
