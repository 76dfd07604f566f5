"""Invoke tasks: model download, stack lifecycle, and pipelines that chain nox sessions.

    invoke --list
    invoke model.download
    invoke stack.up / stack.status / stack.logs / stack.down
    invoke local | ci | preprod

Tasks are thin: they parse arguments and call `llmpyramid`; errors become one line + exit code.
"""

from __future__ import annotations

from invoke import Collection, task  # noqa: F401

ns = Collection()
