"""The one error type the harness raises for problems the user must fix, and its warning for likely ones."""


class HarnessError(Exception):
    """Something in the environment or the configuration is wrong.

    The message is one sentence that names the problem and the fix; the pytest plugin ends the
    run with it instead of a traceback from deep inside a library.
    """


class HarnessWarning(UserWarning):
    """Something that is likely a mistake but may be meant (a queue the stack does not consume); pytest lists
    it in its warnings summary, under the scenario that met it."""
