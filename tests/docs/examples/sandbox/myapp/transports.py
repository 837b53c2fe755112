"""The transports the application opened, kept open for the life of the process."""

_open: list[str] = []


def open_transport(name: str) -> None:
    _open.append(name)


def open_transports() -> list[str]:
    return list(_open)


def close_all() -> None:
    _open.clear()
