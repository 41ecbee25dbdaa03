"""How a word of the vocabulary carries its phrase: the code for machines, and beside it the words for people.

The StrEnums of the vocabulary (:class:`kingfisher_archive.ledger.Status`, ``Held`` and ``Gone``,
:class:`kingfisher_archive.policy.Reject` and ``Comparison``) set ``__new__ = phrased`` and define each member as
``CODE = "code", "what it means to a reader"``. The member is the code (a ``str``, what the ledger, XComs,
``--json`` and metadata.json hold, unchanged); its ``phrase`` is what the page, the command line's text, the
summary and the alerts print. :mod:`kingfisher_archive.words` turns a code and its context into a sentence.

A member written without a phrase still works (its phrase is then the code with spaces), so that adding one never
breaks a run; ``tests/test_words.py`` fails until it has its own.
"""

from __future__ import annotations


def phrased(cls, value: str, phrase: str | None = None):
    """The ``__new__`` of a StrEnum of the vocabulary: the member is ``value``; ``phrase`` is its words."""
    member = str.__new__(cls, value)
    member._value_ = value
    member.phrase = phrase or value.replace("_", " ")
    member.has_phrase = phrase is not None
    return member
