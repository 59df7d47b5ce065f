"""Old import paths of modules that moved (testcontainers' way): the old module forwards every name to the new one
and warns once, so that users' imports survive a reshaping of the tree."""

from __future__ import annotations

import importlib
import sys
import warnings


def forward(old: str, new: str) -> None:
    """Give module ``old`` every public name of module ``new``, and warn that it moved."""
    names = {k: v for k, v in vars(importlib.import_module(new)).items() if not k.startswith("__")}
    vars(sys.modules[old]).update(names)
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
