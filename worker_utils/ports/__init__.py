"""TCP ports leased host-wide, so no other worker or concurrent run binds them."""

from __future__ import annotations

from worker_utils.ports._leases import (
    PortLease,
    PortsExhaustedError,
    get_worker_port_offset,
    lease_port,
    parse_port_range,
    port_lock_dir,
)

__all__ = [
    "PortLease",
    "PortsExhaustedError",
    "get_worker_port_offset",
    "lease_port",
    "parse_port_range",
    "port_lock_dir",
]
