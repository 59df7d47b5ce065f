"""mkdocs-gen-files: the lesson pages, their index and navigation, written at build time (``harness.lessons``)."""

import mkdocs_gen_files

from harness.lessons import write_pages


def write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(text)


for lesson in write_pages(write):
    for nodeid in lesson.stale:  # the build says which runs to record again
        print(f"lessons: {nodeid} was recorded from an earlier version of its scenario: record it again")
