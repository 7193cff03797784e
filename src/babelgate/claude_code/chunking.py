"""How the CLI's text is cut into the client's deltas (`chunking:` of a claude-code provider).

- `token`: as the CLI streams it (its upstream's pieces);
- `word`: whole words: a piece ends at whitespace;
- `sentence`: whole sentences: a piece ends after `.`, `!`, `?` (or their CJK forms)
  followed by whitespace, or at a line break;
- `message`: the whole text of a part in one delta, when the part ends.
What is held back is only the unfinished word or sentence (or, for `message`, the part's
text), and it all comes out when the part ends.
"""

from __future__ import annotations

import re
from typing import Literal

Chunking = Literal["token", "word", "sentence", "message"]

_WORD_END = re.compile(r"\s")
# CJK full stop, exclamation and question marks end a sentence without a space after them.
_SENTENCE_END = re.compile(r"[.!?](?:[\"')\]]*)\s|[\u3002\uff01\uff1f]|\n")


class Chunker:
    """Text in as the CLI gives it, out in the pieces the mode asks for."""

    __slots__ = ("_held", "mode")

    def __init__(self, mode: Chunking) -> None:
        self.mode = mode
        self._held = ""

    def feed(self, text: str) -> str:
        """The text ready to go out now ("" if none)."""
        if self.mode == "token":
            return text
        held = self._held + text
        if self.mode == "message":
            self._held = held
            return ""
        pattern = _WORD_END if self.mode == "word" else _SENTENCE_END
        cut = 0
        for match in pattern.finditer(held, len(self._held) and max(0, len(self._held) - 4)):
            cut = match.end()
        self._held = held[cut:]
        return held[:cut]

    def flush(self) -> str:
        """What is still held, at the end of the part."""
        held, self._held = self._held, ""
        return held
