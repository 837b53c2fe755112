"""The application's migrations: here, a revision that can be applied only once."""

from pathlib import Path

# In the tests' working directory, which every worker of the run shares.
APPLIED = Path("migrations-applied")


def migrate() -> str:
    with APPLIED.open("x") as applied:  # "x": migrating twice in one run fails
        applied.write("0042")
    return "0042"
