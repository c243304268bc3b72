"""FastAPI + SQLAlchemy (async) + skiplock.

- ``POST /orders`` writes the order and enqueues its receipt **in the request's transaction**: if
  anything fails before the commit, neither the order nor the job exists.
- A skiplock worker runs inside the app's lifespan (fine for small apps and for development; run
  ``skiplock worker examples.fastapi_app`` processes separately when the work grows).
- ``GET /jobs/{id}`` shows a job's state and result.

Run it::

    pip install 'skiplock[sqlalchemy]' fastapi uvicorn
    skiplock migrate && SKIPLOCK_DSN=postgresql://postgres@127.0.0.1/postgres uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import skiplock


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    cents: Mapped[int]


@skiplock.task(queue="receipts", max_attempts=5)
async def send_receipt(order_id: int, email: str) -> str:
    await asyncio.sleep(0)  # send the e-mail here
    return f"receipt for order {order_id} sent to {email}"


class NewOrder(BaseModel):
    email: str = Field(min_length=3, max_length=200)
    cents: int = Field(gt=0)


def sqlalchemy_engine(dsn: str) -> AsyncEngine:
    """An async engine on psycopg 3 for a libpq connection string (URL or key=value)."""
    return create_async_engine(
        "postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(dsn)
    )


def create_app(dsn: str | None = None, *, run_worker: bool = True) -> FastAPI:
    dsn = dsn or os.environ.get("SKIPLOCK_DSN", "")
    engine = sqlalchemy_engine(dsn)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    client = skiplock.AsyncClient(dsn)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        worker = skiplock.AsyncWorker([send_receipt], dsn=dsn, concurrency=4)
        running = asyncio.create_task(worker.run()) if run_worker else None
        try:
            yield
        finally:
            if running is not None:
                await worker.stop()  # finishes the jobs in hand, releases the rest
                await running
            await client.close()
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(order: NewOrder) -> dict[str, Any]:
        async with sessions() as session, session.begin():  # one transaction for both writes
            row = Order(email=order.email, cents=order.cents)
            session.add(row)
            await session.flush()  # the order's id, still uncommitted
            job = await send_receipt.using(conn=session, client=client).aenqueue(
                order_id=row.id, email=row.email
            )
            if order.email.endswith("@invalid.example"):
                raise HTTPException(422, "undeliverable address")  # rolls back the order and the job
        return {"order_id": row.id, "job_id": job.id}

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: int) -> dict[str, Any]:
        try:
            job = await client.get_job(job_id)
        except skiplock.JobNotFound:
            raise HTTPException(404, f"no job {job_id}") from None
        return {"id": job.id, "state": job.state.value, "result": job.result}

    return app


app = create_app()  # connects on first use: SKIPLOCK_DSN, DATABASE_URL or libpq PG* variables
