"""The deploy check: will a release break the tasks already in flight? (``python -m harness.deploy_check``)

- ``signatures``: a task's parameters, the calls a producer makes, what a worker of another version does
  with each (Python's own binding), the tolerant form;
- ``compare``: two versions' introspections compared task by task, a verdict per deploy direction, and
  the messages the proof sends with their predicted fates;
- ``versions``: the two versions read in processes of their own (a git ref as a real checkout of the whole
  repository, run from the same relative folder), each checked to come from its own tree;
- ``send``: ``python -m harness.deploy.send``, one version's producer, in a process of its own;
- ``prove``: the verdicts run on a mixed fleet of real workers and producers on a real broker;
- ``output``: the report (terminal table, Markdown, JSON) and the exit status;
- ``check``: one check start to end, for the command and the fixture;
- ``fixtures``: the ``deploy_check`` pytest fixture (``harness.deploy_check_test`` is the CI test using it).
"""
