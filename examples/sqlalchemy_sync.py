"""Enqueue with a SQLAlchemy (sync) Session: the job commits or rolls back with your own writes.

python examples/sqlalchemy_sync.py   # uses SKIPLOCK_DSN
"""

from __future__ import annotations

import os

import psycopg
from sqlalchemy import Engine, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import skiplock


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "example_signups"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)


@skiplock.task(queue="emails")
def send_welcome(signup_id: int) -> str:
    return f"welcome {signup_id}"


def sign_up(engine: Engine, client: skiplock.Client, email: str) -> int:
    """Store the signup and enqueue its welcome e-mail in one transaction; return the job id."""
    with Session(engine) as session, session.begin():
        signup = Signup(email=email)
        session.add(signup)
        session.flush()
        return send_welcome.using(conn=session, client=client).enqueue(signup_id=signup.id).id


def main() -> None:
    dsn = os.environ["SKIPLOCK_DSN"]
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))
    Base.metadata.create_all(engine)
    with skiplock.Client(dsn) as client:
        job_id = sign_up(engine, client, "ada@example.com")
        try:
            sign_up(engine, client, "ada@example.com")  # unique violation: no second job either
        except Exception as exc:
            print(f"second signup refused: {type(exc).__name__}")
        with Session(engine) as session:
            signups = session.scalar(select(func.count()).select_from(Signup))
        print(f"signups: {signups}, welcome job {job_id}: {client.get_job(job_id).state.value}")
    engine.dispose()


if __name__ == "__main__":
    main()
