"""The invoke front door's namespace modules (tasks.py mounts them). Thin: parse flags, call llmpyramid.

They live beside tasks.py, never inside the library: llmpyramid does not import invoke.
"""
