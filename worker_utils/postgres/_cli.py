"""``worker-utils reap``: remove what dead test runs left: PostgreSQL namespaces, Redis leases,
containers."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reap`` subcommand."""
    parser = subparsers.add_parser(
        "reap",
        help="Remove the PostgreSQL schemas and databases, the Redis leases, and with --docker "
        "the containers, that crashed test runs left behind",
        description=(
            "Drop the schemas (in the URL's database) and databases that worker_utils created "
            "and whose owners are dead; on Redis, empty and free the databases leased by dead "
            "workers, and remove their prefixed keys and Redis users; with --docker, remove the "
            "containers of the docker backend whose run on this host is dead. Anything without "
            "a worker_utils ownership record, lease or label is never touched. Each server is "
            "reaped even if another cannot be. Exit status: 0 done, 2 usage or connection "
            "errors (with any server)."
        ),
    )
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help="The server and database to clean (default: $WORKER_UTILS_POSTGRES_URL)",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="The Redis server whose database holds the leases (default: $WORKER_UTILS_REDIS_URL)",
    )
    parser.add_argument(
        "--docker",
        action="store_true",
        help="Remove the containers of dead runs from the engine at $DOCKER_HOST",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="List what would be dropped; drop nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Reap what ``args`` names and print one line per namespace or container found."""
    from worker_utils import postgres
    from worker_utils.redis import _reap as redis_reap

    url = args.postgres_url or os.environ.get(postgres.URL_VAR)
    redis_url = args.redis_url or os.environ.get(redis_reap.URL_VAR)
    if not url and not redis_url and not args.docker:
        print(
            f"worker-utils reap: nothing to reap; pass --postgres-url URL or set "
            f"{postgres.URL_VAR}, --redis-url URL or set {redis_reap.URL_VAR}, or pass --docker",
            file=sys.stderr,
        )
        return 2
    # Each server is reaped even when another cannot be: what one leaves is no reason to keep
    # another's; the exit status is 2 if any could not.
    status = 0
    verb = "would remove" if args.dry_run else "removed"
    if args.docker:
        from worker_utils.servers import docker

        try:
            names = docker.reap(dry_run=args.dry_run, log=print)
        except docker.DockerError as exc:
            print(f"worker-utils reap: {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"{verb} {len(names)} container(s)")
    if redis_url:
        from worker_utils import redis

        setting = "--redis-url" if args.redis_url else redis_reap.URL_VAR
        try:
            freed = redis_reap.reap(
                redis.parse_redis_url(redis_url, setting=setting),
                setting=setting,
                dry_run=args.dry_run,
                log=print,
            )
        except (redis.RedisUrlError, redis.RedisSetupError) as exc:
            print(f"worker-utils reap: {exc}", file=sys.stderr)
            status = 2
        else:
            verb = "would free" if args.dry_run else "freed"
            print(
                f"{verb} {len(freed.freed)} Redis lease(s) and {len(freed.users)} user(s), "
                f"kept {len(freed.kept)}"
            )
    if not url:
        return status
    setting = "--postgres-url" if args.postgres_url else postgres.URL_VAR
    try:
        postgres.preflight(url, setting=setting)
        postgres.check_pooler(url, setting=setting, kind=None)
        result = postgres.reap(url, dry_run=args.dry_run, log=print)
    except postgres.PostgresError as exc:
        print(f"worker-utils reap: {exc}", file=sys.stderr)
        return 2
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{verb} {len(result.dropped)}, kept {len(result.kept)}")
    return status
