"""Throwaway servers that the plugin starts once per run when no URL is configured.

Every backend (:mod:`~worker_utils.servers.postgres` and
:mod:`~worker_utils.servers.redis` from the host's binaries,
:mod:`~worker_utils.servers.docker` as containers) is a :class:`Server`:
started once per run by the first worker that needs it, its URL handed to
every worker, stopped when the run ends (on Ctrl-C and SIGTERM too) and, if
the run crashed, by the next run's reaper. :mod:`~worker_utils.servers.plugin`
holds the setting that chooses the backend.
"""

from __future__ import annotations

from worker_utils.servers._base import Server, ServerStartError

__all__ = ["Server", "ServerStartError"]
