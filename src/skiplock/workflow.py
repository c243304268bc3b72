"""Workflow shapes built from JobSpecs: chains and groups (pure; enqueue them with ``enqueue_many``).

``depends_on`` on a JobSpec is the general form (any DAG); these build the two common shapes::

    client.enqueue_many(skiplock.chain(fetch.spec(url=u), parse.spec(), store.spec()))
    client.enqueue_many(skiplock.group([resize.spec(n=n) for n in sizes], then=notify.spec()))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from skiplock.errors import ConfigError
from skiplock.models import JobSpec

__all__ = ["chain", "group"]


def chain(*specs: JobSpec) -> list[JobSpec]:
    """Return the specs with each one depending on the one before it (a pipeline).

    With the default ``on_parent_failure="cancel"``, a step that fails for good cancels every
    step after it.
    """
    out: list[JobSpec] = []
    for spec in specs:
        out.append(replace(spec, depends_on=(*spec.depends_on, out[-1])) if out else spec)
    return out


def group(members: Iterable[JobSpec], then: JobSpec) -> list[JobSpec]:
    """Return ``members`` followed by ``then``, a callback that runs once when every member has
    finished, whatever each one's outcome (a chord: ``on_parent_failure`` defaults to ``"run"``).

    The callback reads each member's state, result and error with
    ``current_job().parent_results()``.
    """
    listed = list(members)
    if not listed:
        raise ConfigError("a group needs at least one member job")
    callback = replace(
        then,
        depends_on=(*then.depends_on, *listed),
        on_parent_failure=then.on_parent_failure or "run",
    )
    return [*listed, callback]
