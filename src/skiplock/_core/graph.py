"""Workflow batches: order a batch of JobSpecs so parents come first, and say how each job names
its parents to ``skiplock.enqueue_many`` (pure; no I/O).

A batch may list jobs in any order and name other JobSpecs of the same batch in ``depends_on``.
The database accepts a parent inside a batch only when it comes before its child (``-k`` for
the k-th job), which makes cycles impossible to write; here the batch is sorted topologically
(stable: input order wherever the graph allows it) and a cycle is reported with its path.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass

from skiplock.errors import ConfigError
from skiplock.models import Dependency, Job, JobSpec, Json, ParentRef

__all__ = ["ON_FAILURE", "BatchPlan", "check_on_failure", "existing_parent", "parent_json", "plan_batch"]

ON_FAILURE = ("cancel", "run")


@dataclass(frozen=True, slots=True)
class _Edge:
    batch_pos: int | None  # position (in submission order) of a parent in this batch
    job_id: int | None  # or an existing job's id
    on_failure: str | None  # None: the child's on_parent_failure


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """``order[p]`` is the input index of the p-th job to submit; ``edges[p]`` its parents."""

    order: list[int]
    edges: list[list[_Edge]]

    def depends_on(self, start: int, stop: int, ids: Sequence[int]) -> list[str | None]:
        """The ``depends_on`` JSON of positions ``start:stop`` sent as one enqueue_many call.

        ``ids`` holds the ids of the positions already submitted (``< start``): a parent there
        is named by its id, a parent in this call as ``-k`` (its 1-based place in the call).
        """
        out: list[str | None] = []
        for p in range(start, stop):
            refs: list[Json] = []
            for e in self.edges[p]:
                if e.batch_pos is None:
                    ref: int = e.job_id  # type: ignore[assignment]
                elif e.batch_pos >= start:
                    ref = -(e.batch_pos - start + 1)
                else:
                    ref = ids[e.batch_pos]
                refs.append(ref if e.on_failure is None else {"job": ref, "on_failure": e.on_failure})
            out.append(parent_json(refs) if refs else None)
        return out


def parent_json(refs: list[Json]) -> str:
    return json.dumps(refs, separators=(",", ":"))


def check_on_failure(value: str | None, what: str) -> None:
    if value is not None and value not in ON_FAILURE:
        raise ConfigError(f"{what} must be 'cancel' or 'run', got {value!r}")


def existing_parent(ref: ParentRef) -> tuple[int, str | None]:
    """A parent that already exists: (job id, its edge's on_failure or None)."""
    on_failure: str | None = None
    if isinstance(ref, Dependency):
        check_on_failure(ref.on_failure, "Dependency.on_failure")
        on_failure, ref = ref.on_failure, ref.job
    if isinstance(ref, Job):
        return ref.id, on_failure
    if isinstance(ref, JobSpec):
        raise ConfigError(
            "depends_on names a JobSpec that is not in this batch; enqueue it in the same "
            "enqueue_many call, or enqueue it first and pass the Job (or its id)"
        )
    if isinstance(ref, bool) or not isinstance(ref, int) or ref <= 0:
        raise ConfigError(
            f"a parent must be a job id (a positive int), a Job, a JobSpec or a Dependency; got {ref!r}"
        )
    return ref, on_failure


def plan_batch(specs: Sequence[JobSpec]) -> BatchPlan:
    """Sort a batch so every parent precedes its children; raise ConfigError on a cycle."""
    index = {id(s): i for i, s in enumerate(specs)}
    raw: list[list[tuple[int | None, int | None, str | None]]] = []
    for i, spec in enumerate(specs):
        check_on_failure(spec.on_parent_failure, f"on_parent_failure (batch position {i + 1})")
        edges: list[tuple[int | None, int | None, str | None]] = []
        for ref in spec.depends_on:
            target = ref.job if isinstance(ref, Dependency) else ref
            if isinstance(target, JobSpec) and id(target) in index:
                on_failure = None
                if isinstance(ref, Dependency):
                    check_on_failure(ref.on_failure, "Dependency.on_failure")
                    on_failure = ref.on_failure
                parent = index[id(target)]
                if parent == i:
                    raise ConfigError(f"the job at batch position {i + 1} ({spec.task}) depends on itself")
                edges.append((parent, None, on_failure))
            else:
                job_id, on_failure = existing_parent(ref)
                edges.append((None, job_id, on_failure))
        raw.append(edges)

    children: list[list[int]] = [[] for _ in specs]
    missing = [0] * len(specs)
    for i, edges in enumerate(raw):
        for j, _, _ in edges:
            if j is not None:
                children[j].append(i)
                missing[i] += 1
    ready = [i for i, n in enumerate(missing) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in children[i]:
            missing[c] -= 1
            if missing[c] == 0:
                heapq.heappush(ready, c)
    if len(order) < len(specs):
        raise ConfigError(f"dependency cycle: {_cycle(specs, raw, set(order))}")

    position = {i: p for p, i in enumerate(order)}
    return BatchPlan(
        order=order,
        edges=[
            [
                _Edge(None if j is None else position[j], job_id, on_failure)
                for j, job_id, on_failure in raw[i]
            ]
            for i in order
        ],
    )


def _cycle(
    specs: Sequence[JobSpec], raw: list[list[tuple[int | None, int | None, str | None]]], done: set[int]
) -> str:
    """Describe one cycle among the jobs left unsorted: 'a (batch position 1) -> b (batch position 2) -> a (batch position 1)'."""
    start = next(i for i in range(len(specs)) if i not in done)
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:  # follow parents: every node left has one left too
        seen[node] = len(path)
        path.append(node)
        node = next(j for j, _, _ in raw[node] if j is not None and j not in done)
    loop = [*path[seen[node] :], node]
    loop.reverse()  # parent -> child
    return " -> ".join(f"{specs[i].task} (batch position {i + 1})" for i in loop)
