"""The dashboard's pure parts: the job filter, the SVG geometry, the inert text filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from skiplock.models import GraphNode, JobState
from skiplock.web.charts import layout_graph, trend
from skiplock.web.filters import FilterError, JobFilter
from skiplock.web.render import environment, shown


def test_filter_parses_checks_and_round_trips():
    flt = JobFilter.parse({"queue": " emails ", "state": "failed", "since": "2026-12-01T09:30", "task": ""})
    assert flt.queue == "emails"
    assert flt.state is JobState.FAILED
    assert flt.task is None
    assert flt.since == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # UTC unless an offset is given
    assert JobFilter.parse(flt.form()) == flt
    assert flt.params()["state"] == "failed"
    assert "queue=emails" in flt.query(action="retry")
    assert JobFilter.parse({}).is_empty


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"state": "done"}, "state: must be one of"),
        ({"since": "yesterday"}, "since: not a date and time"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since must be before until"),
        ({"queue": "x" * 501}, "queue: at most 500 characters"),
        ({"error": "a\x00b"}, "error: contains a NUL character"),
    ],
)
def test_filter_errors_are_one_clear_line(form, message):
    with pytest.raises(FilterError, match=message) as caught:
        JobFilter.parse(form)
    assert "\n" not in str(caught.value)


def test_trend_scales_each_line_to_its_maximum():
    t = trend([0, 5, 10], [1.0, 1.0], width=100, height=20)
    assert t.first == "0.0,19.0 50.0,10.0 100.0,1.0"
    assert t.first_max == 10
    assert t.second.startswith("0.0,1.0")
    assert trend([3], []).first == ""  # one point is no line


def node(job_id: int, *parents: int) -> GraphNode:
    return GraphNode(id=job_id, queue="q", task=f"t{job_id}", state=JobState.WAITING, parents=list(parents),
                     on_failure=["cancel"] * len(parents), pending_parents=len(parents), finished_at=None)  # fmt: skip


def test_graph_layout_puts_children_right_of_all_their_parents():
    graph = layout_graph([node(1), node(2), node(3, 1, 2), node(4, 3), node(5, 1, 4)], current=3)
    x = {b.id: b.x for b in graph.boxes}
    assert x[1] == x[2] < x[3] < x[4] < x[5]
    assert [b.id for b in graph.boxes if b.is_current] == [3]
    assert len(graph.edges) == 5
    assert all(e.x1 < e.x2 for e in graph.edges)
    assert not graph.truncated


def test_graph_layout_survives_a_cycle_and_caps_its_size():
    graph = layout_graph([node(1, 2), node(2, 1)], current=1)
    assert len(graph.boxes) == 2
    big = layout_graph([node(i) for i in range(1, 300)], current=1)
    assert big.truncated
    assert len(big.boxes) == 120


def test_shown_makes_controls_and_bidi_overrides_visible():
    assert shown("invoice\u202egnp.exe") == "invoice\\u202egnp.exe"
    assert shown("\x1b[2Jx\u2066y\u200b") == "\\x1b[2Jx\\u2066y\\u200b"
    assert shown("line\nnext") == "line\nnext"
    assert shown("line\nnext", newlines=False) == "line\\x0anext"
    assert shown("abcdef", 4) == "abc…"
    assert shown(None) == ""


def test_templates_autoescape_everything():
    env = environment()
    assert env.from_string("{{ v }}").render(v='"><script>') == "&#34;&gt;&lt;script&gt;"
    assert env.from_string("{{ v | shown }}").render(v="<b>") == "&lt;b&gt;"


def test_no_template_turns_escaping_off_or_carries_inline_code():
    from skiplock.web.render import TEMPLATES

    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        for forbidden in (
            "|safe",
            "| safe",
            "autoescape false",
            "Markup(",
            " style=",
            "<script>",
            " onclick=",
            " onload=",
        ):
            assert forbidden not in text, (path.name, forbidden)
