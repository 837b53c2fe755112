"""The application's SQLAlchemy engine opens its connections with the configured PRAGMAs."""


def test_the_engine_connects_with_the_pragmas(engine):
    with engine.connect() as conn:
        found = [
            conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        ]
    assert found == ["wal", 1, 1, 5000]  # 1 is NORMAL
