"""The application's tables and the code under test."""

from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def add_item(session: Session, name: str) -> int:
    session.add(Item(name=name))
    session.commit()
    return session.scalar(select(func.count()).select_from(Item)) or 0
