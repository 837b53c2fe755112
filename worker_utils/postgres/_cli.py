"""``worker-utils reap``: drop the PostgreSQL namespaces that dead test runs left behind."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reap`` subcommand."""
    parser = subparsers.add_parser(
        "reap",
        help="Drop PostgreSQL schemas and databases that crashed test runs left behind",
        description=(
            "Drop the schemas (in the URL's database) and databases that worker_utils created "
            "and whose owners are dead. Anything without a worker_utils ownership record is "
            "never touched. Exit status: 0 done, 2 usage or connection errors."
        ),
    )
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help="The server and database to clean (default: $WORKER_UTILS_POSTGRES_URL)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="List what would be dropped; drop nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Reap the server named in ``args`` and print one line per namespace found."""
    from worker_utils import postgres

    url = args.postgres_url or os.environ.get(postgres.URL_VAR)
    if not url:
        print(
            f"worker-utils reap: no server given; pass --postgres-url URL "
            f"or set {postgres.URL_VAR}",
            file=sys.stderr,
        )
        return 2
    try:
        postgres.preflight(url, setting="--postgres-url")
        result = postgres.reap(url, dry_run=args.dry_run, log=print)
    except postgres.PostgresError as exc:
        print(f"worker-utils reap: {exc}", file=sys.stderr)
        return 2
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{verb} {len(result.dropped)}, kept {len(result.kept)}")
    return 0
