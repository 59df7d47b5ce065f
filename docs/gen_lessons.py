"""mkdocs-gen-files: the lesson pages and the landing page's plot, written at build time (``harness.lessons``)."""

import mkdocs_gen_files

from harness.lessons import write_pages
from harness.plots import plot

# The landing page's picture: the worker-outage story's recorded run.
LANDING = "scenarios/test_worker_outage.py::test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart"


def write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(text)


found = write_pages(write)
landing = [run for lesson in found for run in lesson.runs if run["nodeid"] == LANDING]
if not landing:
    raise SystemExit(f"gen_lessons: no recorded run of {LANDING} for the landing page (python -m harness.lessons)")
write("assets/landing-plot.svg", plot(landing[0], "landing"))
for lesson in found:
    for nodeid in lesson.stale:  # the build says which runs to record again
        print(f"lessons: {nodeid} was recorded from an earlier version of its scenario: record it again")
