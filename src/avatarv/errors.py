"""The project's own error types: one line, naming the file or key and the problem."""

from __future__ import annotations


class AvatarVError(ValueError):
    """Base class; the CLI prints these as one line and exits non-zero."""


class ConfigError(AvatarVError):
    """A wrong profile name, a missing or unknown key, or a value of the wrong type in params.yaml."""


class MediaError(AvatarVError):
    """A media file that is missing, unreadable, corrupt, truncated, or lacks a needed stream."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class InputError(AvatarVError):
    """Content that decodes but cannot be used (no face, several faces, silence, wrong rate, absurd size)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
