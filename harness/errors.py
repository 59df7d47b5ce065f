"""The one error type the harness raises for problems the user must fix."""


class HarnessError(Exception):
    """Something in the environment or the configuration is wrong.

    The message is one sentence that names the problem and the fix; the pytest plugin ends the
    run with it instead of a traceback from deep inside a library.
    """
