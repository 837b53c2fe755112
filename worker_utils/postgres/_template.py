"""The run's template namespace: ``worker_postgres_setup`` runs there once, workers copy it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker_utils._util import wait_until
from worker_utils.postgres._budget import plugin_application_name
from worker_utils.postgres._dsn import connect
from worker_utils.postgres._names import parse_record, template_name
from worker_utils.postgres._namespace import WorkerNamespace, kind_of
from worker_utils.postgres._reap import drop_if_unlocked

__all__ = ["build_template", "drop_template"]


def build_template(
    url: str,
    run_uid: str,
    prefix: str,
    kind: str,
    extension_schema: str,
    setup: Callable[[Any], object],
    extensions: Sequence[str] = (),
    slot_wait: float = 0.0,
) -> dict[str, Any]:
    """Run ``setup`` once for the run, in a template namespace that workers copy.

    Returns:
        JSON data for :meth:`WorkerNamespace.create` and :func:`drop_template`:
        ``clonable`` is False (with a ``reason``) when the template holds objects
        a schema copy cannot reproduce; workers then run the setup themselves.
        ``seeded`` (database mode) is True when the setup left rows.
    """
    template = WorkerNamespace(
        url,
        template_name(run_uid, prefix),
        run_uid,
        kind,
        extension_schema,
        extensions,
        slot_wait=slot_wait,
        template=True,
    )
    template.create()
    try:
        with template.connect() as conn:  # committed on leaving the block
            setup(conn)
        reason, seeded = template.template_facts()
    except BaseException:
        template.drop()
        raise
    template.drop(keep=True)
    return {
        "url": url,
        "name": template.name,
        "kind": kind,
        "clonable": reason is None,
        "reason": reason,
        "seeded": seeded,
        "slot_wait": slot_wait,
    }


def drop_template(value: Mapping[str, Any]) -> None:
    """Drop a template made by :func:`build_template`; the run's controller calls it at the end."""
    url = value["url"]
    with connect(
        url,
        autocommit=True,
        wait=value.get("slot_wait", 0.0),
        application_name=plugin_application_name(value["name"]),
    ) as conn:
        row = kind_of(value["kind"]).comment(conn, value["name"])
        owner = parse_record(row[0] if row else None, value["kind"], value["name"])
        current_db = conn.info.dbname
        if owner is not None:
            # The builder has exited, but the server may not have ended its backend yet,
            # whose session still holds the owner's lock: give it a few seconds.
            wait_until(
                lambda: (
                    drop_if_unlocked(url, conn, current_db, owner, dry_run=False) is None or None
                ),
                timeout=5.0,
                interval=0.05,
            )
