"""harness.plots: what the report's plot draws, on hand-made scenario data (no broker, no browser)."""

from __future__ import annotations

import random
import re

from harness.plots import bursts, mark_rows, plot, runs, with_gaps

W = "worker_hello@harness"


def step(kind: str, at: float, host: str = W) -> dict:
    return {"type": kind, "hostname": host, "at": at, "exception": None, "witnesses": ["journal"], "late": None}


def test_a_run_whose_end_came_after_the_redelivery_is_drawn_as_ended() -> None:
    # Acks late and a broker restart, as the merged history orders it: run 1's success was reported after the
    # redelivered message was received again, and run 2 ended too.
    events = [
        step("task-received", 1.85), step("task-started", 1.97), step("task-received", 22.38),
        {**step("task-succeeded", 22.40), "late": 17.4}, step("task-started", 22.49), step("task-succeeded", 25.49),
    ]  # fmt: skip
    first, second = runs(events)
    assert (first.start, first.end, first.how, first.late_s) == (1.97, 22.40, "task-succeeded", 17.4)
    assert (second.start, second.end, second.how) == (22.49, 25.49, "task-succeeded")


def test_a_run_cut_off_by_a_kill_has_no_end_and_its_redelivery_does() -> None:
    events = [
        step("task-started", 1.0), step("task-received", 5.0, "other@harness"),
        step("task-started", 5.1, "other@harness"), step("task-succeeded", 6.0, "other@harness"),
    ]  # fmt: skip
    killed, rerun = runs(events)
    assert killed.end is None and (rerun.host, rerun.end) == ("other@harness", 6.0)


def test_a_retry_ends_a_run_and_the_next_run_ends_on_its_own() -> None:
    events = [step("task-started", 0), step("task-retried", 1), step("task-started", 3), step("task-failed", 4)]
    assert [(r.start, r.end, r.how) for r in runs(events)] == [(0, 1, "task-retried"), (3, 4, "task-failed")]


def test_a_silence_in_the_depth_samples_is_a_gap_not_the_last_value_held() -> None:
    """The sampler's reading hung for 3 s while the broker stopped: the plot must not show 20 messages over those
    3 s (and past the broker's return), which would say they were still there."""
    points = [{"at": t, "queue": "q", "ready": r, "unacked": 0} for t, r in ((0.0, 20), (0.1, 20), (3.2, 0))]
    assert [(p["at"], p["ready"]) for p in with_gaps(points)] == [(0.0, 20), (0.1, 20), (0.2, None), (3.2, 0)]
    assert with_gaps(points[:2]) == points[:2], "samples 0.1 s apart are left as they are"


def test_mark_numbers_never_share_a_row_when_close() -> None:
    generator = random.Random(7)
    for _ in range(200):
        positions = sorted(generator.uniform(0, 20) for _ in range(generator.randint(1, 12)))
        rows = mark_rows(positions, span=20.0, gap=0.025)
        for i, (x, row) in enumerate(zip(positions, rows, strict=True)):
            for y, other in zip(positions[i + 1 :], rows[i + 1 :], strict=True):
                assert row != other or abs(x - y) >= 0.5, (positions, rows)


def test_marks_far_apart_stay_on_the_first_row() -> None:
    assert mark_rows([1.0, 5.0, 9.0], span=10.0) == [0, 0, 0]
    assert mark_rows([1.0, 1.1, 1.2, 5.0], span=10.0) == [0, 1, 2, 0]


def test_twenty_sends_in_half_a_second_are_one_burst_of_twenty() -> None:
    times = [2.0 + 0.02 * i for i in range(20)] + [9.0]
    assert bursts(times) == [(2.0, 2.38, 20), (9.0, 9.0, 1)]


def record() -> dict:
    t0 = 1000.0
    task = [step("task-sent", t0 + 0.5, "web"), step("task-started", t0 + 1.0), step("task-succeeded", t0 + 1.5)]
    return {
        "nodeid": "scenarios/test_x.py::test_x",
        "timeline": {
            "started": t0,
            "marks": [
                {"at": t0 + 2.0, "label": "broker stopped", "kind": "broker"},
                {"at": t0 + 2.1, "label": "worker_hello stopped", "kind": "program"},
                {"at": t0 + 6.0, "label": "broker back", "kind": "broker"},
            ],
            "broker_down": [{"start": t0 + 2.0, "end": t0 + 6.0, "what": "broker down"}],
            "samples": [{"at": t0 + i / 10, "queue": "hello_queue", "ready": 1, "unacked": 0} for i in range(80)],
        },
        "tasks": {"a": {"fate": "succeeded", "events": task}},
        "fates": {"succeeded": 1},
        "sends": {"a": {"at": t0 + 0.5, "ok": True, "error": None}},
        "ended": t0 + 8.0,
    }


def test_the_svg_names_each_task_links_it_to_its_row_and_labels_the_broker_down_span() -> None:
    svg = plot(record(), "scenario-x")
    assert svg.startswith("<svg") and 'width="100%"' in svg
    assert "<title>task #1 a: succeeded</title>" in svg
    assert 'xlink:href="#scenario-x-task-1"' in svg
    texts = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert "broker down:" in texts and "no samples" in texts, texts
