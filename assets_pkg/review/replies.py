"""What a reviewer's short reply means, without an LLM: yes / no / next / "try a beagle".

Only whole replies from a small vocabulary are understood; anything else (a long text, markup, a
path, an instruction) is "not understood", never a yes: an approval must be unmistakable. A subject
the reviewer names is cleaned to plain words before anyone uses it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

YES = "yes"
NO = "no"  # "no" and "next" do the same: turn down what is shown (the subject or the candidate)
ANOTHER_SUBJECT = "another_subject"  # with `subject` when the reviewer named one
NOT_UNDERSTOOD = "not_understood"

REPLY_MAX_CHARS = 80  # a short reply; longer text is not one of the replies understood here
SUBJECT_MAX_CHARS = 40
SUBJECT_MAX_WORDS = 5

_YES = {"yes", "y", "yep", "yeah", "ok", "okay", "sure", "looks right", "looks good", "approve", "perfect"}
_NO = {"no", "n", "nope", "not quite", "not really", "next", "next one", "skip", "show the next one"}
_ANOTHER = {"another subject", "different subject", "something else", "new subject"}
_TRY = re.compile(r"^(?:(?:no|nope|not quite)\s*,?\s*)?(?:try|how about|what about|maybe|use|show me)\s+(?P<subject>.+)$")
_ARTICLE = re.compile(r"^(?:an?|the|some)\s+")


@dataclass(frozen=True)
class Reply:
    kind: str
    subject: str | None = None


class InvalidSubject(ValueError):
    pass


def parse_reply(text: str) -> Reply:
    if not isinstance(text, str) or len(text) > REPLY_MAX_CHARS:
        return Reply(NOT_UNDERSTOOD)
    said = " ".join(text.lower().split()).rstrip(".!?")
    if said in _YES:
        return Reply(YES)
    if said in _NO:
        return Reply(NO)
    if said in _ANOTHER:
        return Reply(ANOTHER_SUBJECT)
    if match := _TRY.match(said):
        try:
            return Reply(ANOTHER_SUBJECT, clean_subject(match["subject"]))
        except InvalidSubject:
            return Reply(NOT_UNDERSTOOD)
    return Reply(NOT_UNDERSTOOD)


def clean_subject(text: str) -> str:
    """A subject a reviewer typed, as plain lower-case words: letters, digits, inner hyphens and
    apostrophes; a leading article dropped. Raises `InvalidSubject` saying what is accepted."""
    if not isinstance(text, str) or len(text) > 4 * SUBJECT_MAX_CHARS:
        raise InvalidSubject(f"a subject is a few words, at most {SUBJECT_MAX_CHARS} characters")
    plain = unicodedata.normalize("NFKC", text).lower()
    plain = "".join(ch if ch.isalnum() or ch in "-'" else " " for ch in plain)
    words = [w.strip("-'") for w in plain.split()]
    subject = _ARTICLE.sub("", " ".join(w for w in words if w))
    if not subject:
        raise InvalidSubject("a subject needs at least one word")
    if len(subject) > SUBJECT_MAX_CHARS or len(subject.split()) > SUBJECT_MAX_WORDS:
        raise InvalidSubject(f"a subject is at most {SUBJECT_MAX_WORDS} words and {SUBJECT_MAX_CHARS} characters")
    return subject
