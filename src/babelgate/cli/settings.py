"""What the commands that read babelgate.yaml share: the settings and the database URL, or
one clear line on stderr and exit status 2.

What this module promises: `load_or_say(path)` and `storage_or_say(settings)` return what
was asked, or None once they have printed `babelgate: configuration error: ...` (never a
traceback, never a key: ConfigError's text names fields, not values); the caller exits with
`EXIT_CONFIG`. `whole_number(what, minimum)` is an argparse type for counts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from babelgate.config import ConfigError, Settings, load_settings
from babelgate.storage.url import StorageURL

EXIT_CONFIG = 2  # as a bad command line


def say(problem: object) -> None:
    print(f"babelgate: configuration error: {problem}", file=sys.stderr)


def load_or_say(path: str | None) -> Settings | None:
    """The settings from `path` (else ./babelgate.yaml, else the environment)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        say(exc)
        return None


def storage_or_say(settings: Settings) -> StorageURL | None:
    """The database `serve` uses with these settings (storage.url, else storage.path)."""
    try:
        return StorageURL.from_settings(settings.storage.url, settings.storage.path)
    except ValueError as exc:
        say(f"storage.url: {exc}")
        return None


def whole_number(what: str, minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`; `what` names it in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number of {what}: {text!r}"
                                             ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}: {value}")
        return value

    return parse
