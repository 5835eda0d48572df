"""How error messages name an option: as the ``cnn-study`` command spells it, or as the Python API does.

A message raised deep in the package says what to do (``pass download=True``); a learner at the
command line should read the flag they can type (``add --download``). The command line sets
`command_line_messages` while it runs, and messages spell their options through `option`.

Examples:
    >>> option("download")
    'download=True'
    >>> with command_line_messages():
    ...     option("download")
    '--download'
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_COMMAND_LINE = contextvars.ContextVar("cnn_study_command_line", default=False)

#: ``name: (command line, Python API)``.
_SPELLINGS = {
    "download": ("--download", "download=True"),
    "root": ("--data", "root=..."),
    "out": ("--out", "out=..."),
    "resume": ("--resume", "resume=True"),
    "overwrite": ("--overwrite", "overwrite=True"),
    "quick": ("--quick", "quick=True"),
    "head_only": ("--head-only", "head_only=True"),
    "backbone": ("--backbone", "recipe.on_backbone(...)"),
}


def option(name: str) -> str:
    """The option ``name`` as the caller would write it: ``--download`` or ``download=True``.

    Args:
        name: One of ``download``, ``root``, ``out``, ``resume``, ``overwrite``, ``quick``, ``head_only``,
            ``backbone``.
    """
    command_line, python = _SPELLINGS[name]
    return command_line if _COMMAND_LINE.get() else python


@contextmanager
def command_line_messages() -> Iterator[None]:
    """Within this block, `option` spells options as the command line does."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)
