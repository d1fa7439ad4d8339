"""PII redaction of what a trace says: prompt, response, messages, contexts, metadata, comments.

What is found is replaced by its kind in brackets, so the text still reads:

- ``[EMAIL]``  e-mail addresses
- ``[CARD]``   payment card numbers: 13 to 19 digits, spaced or dashed or not, that pass the Luhn check
- ``[PHONE]``  phone numbers: 9 to 15 digits written as phone numbers are (+country code, (area)
  code, groups), or 10-11 digits in one run
- ``[KEY]``    key-like strings: provider API keys (sk-..., AKIA..., ghp_..., xox?-..., AIza...), JWTs,
  PEM private keys, the value of ``password=...``-style assignments, long random mixed-case tokens
- ``[NAME]``   anything matching a configured extra pattern (``KAIZEN_INGEST__REDACT_PATTERNS``)

Redacting a redacted text finds nothing more, so it is safe to apply twice.

Speed matters (every span of every request goes through here), and Python's regular expressions
scan at 10-60 ns a character. So each kind first asks a question that C answers at about 1 ns a
character (is there an ``@``? nine digits? a 16-character run of key characters? a password-like
word?) and only texts that could hold that kind are searched for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from shared.events import FeedbackRecord, TraceRecord

_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_KEY = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{16,}",
            r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",
            r"\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            r"\bAIza[0-9A-Za-z_\-]{35}",
            r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
        )
    )
)
# A long run of letters and digits mixing upper case, lower case and digits looks like a generated key.
_TOKEN = re.compile(r"\b[A-Za-z0-9_\-]{32,}\b")
# "password: hunter22" keeps its label and loses its value.
_ASSIGNMENT = re.compile(
    r"(?i:\b(?:api[_\- ]?key|secret(?:[_\-]?key)?|access[_\-]?token|auth[_\-]?token|token"
    r"|password|passwd|pwd)\b)"
    r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{6,})"
)
_ASSIGNMENT_WORDS = ("passw", "pwd", "secret", "token", "api_key", "api-key", "apikey", "api key")
# Digit groups separated by single spaces, dots or dashes, with an optional +country code and
# (area) code: the shape shared by phone and card numbers; counting digits (and Luhn) decides which,
# if either. Groups are maximal digit runs, so matching never backtracks.
_NUMBER = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,}(?:[ .\-]\d{2,})*(?![\w])")
_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")

# Digits to "0", everything else to "x", number separators dropped: nine "0"s in a row mean a run of
# digits and separators that could be a phone or card number.
_DIGIT_MAP = bytes((48 if 48 <= i <= 57 else 120) for i in range(256))
_NUMBER_SEPARATORS = b" .-()+"
_DIGIT_RUN = b"0" * 9
_KEY_CHAR_MAP = bytes(
    (97 if (48 <= i <= 57 or 65 <= i <= 90 or 97 <= i <= 122 or i in (45, 95)) else 32) for i in range(256)
)
_KEY_RUN = b"a" * 16


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (every payment card number does)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class Redactor:
    """Finds and replaces PII in text; ``extra_patterns`` (name -> regex) adds kinds of its own."""

    def __init__(self, extra_patterns: Mapping[str, str] | None = None) -> None:
        self._extra: list[tuple[re.Pattern[str], str]] = []
        for name, pattern in (extra_patterns or {}).items():
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction pattern {name!r} is not a regular expression: {exc}") from exc
            self._extra.append((compiled, f"[{name.upper()}]"))

    def might_contain(self, text: str) -> bool:
        """False when the text surely holds nothing to redact (the fast questions, no regex scan)."""
        if not text:
            return False
        if "@" in text:
            return True
        for pattern, _ in self._extra:
            if pattern.search(text):
                return True
        raw = text.encode("utf-8", "surrogatepass")
        if b"-----BEGIN" in raw or _KEY_RUN in raw.translate(_KEY_CHAR_MAP):
            return True
        if _DIGIT_RUN in raw.translate(_DIGIT_MAP, _NUMBER_SEPARATORS):
            return True
        return _may_assign(text)

    def redact(self, text: str) -> tuple[str, int]:
        """The text with PII replaced, and how many replacements were made."""
        if not text:
            return text, 0
        count = 0
        for pattern, label in self._extra:
            text, found = pattern.subn(label, text)
            count += found
        if "@" in text:
            text, found = _redact_emails(text)
            count += found
        raw = text.encode("utf-8", "surrogatepass")
        if b"-----BEGIN" in raw or _KEY_RUN in raw.translate(_KEY_CHAR_MAP):
            text, found = _KEY.subn("[KEY]", text)
            count += found
            text, found = _sub(_TOKEN, text, _generated_token)
            count += found
        if _may_assign(text):
            text, found = _sub(_ASSIGNMENT, text, _assigned_value)
            count += found
        if _DIGIT_RUN in raw.translate(_DIGIT_MAP, _NUMBER_SEPARATORS):
            text, found = _sub(_NUMBER, text, _classify_number)
            count += found
        return text, count

    def redact_value(self, value: Any) -> tuple[Any, int]:
        """Redact every string inside a JSON-like value (dicts, lists); keys are left as they are."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            total = 0
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key], found = self.redact_value(item)
                total += found
            return out, total
        if isinstance(value, list):
            total = 0
            items: list[Any] = []
            for item in value:
                redacted, found = self.redact_value(item)
                items.append(redacted)
                total += found
            return items, total
        return value, 0


_MANY_SEPARATORS = 32


def _may_assign(text: str) -> bool:
    """Whether ``_ASSIGNMENT`` could match: a password-like word just before a ``:`` or ``=``.

    ``_ASSIGNMENT`` wants the word, an optional quote, any whitespace, then the separator; so only the
    16 characters before each separator, past that whitespace, need looking at (the longest form,
    ``"access_token"``, takes 13), not the whole text (3.9 us a kilobyte for the eight words). A text
    with more than a few dozen separators (JSON, logs) is searched whole, as before.
    """
    separators = text.count(":") + text.count("=")
    if not separators:
        return False
    if separators > _MANY_SEPARATORS:
        lowered = text.lower()
        return any(word in lowered for word in _ASSIGNMENT_WORDS)
    for separator in ":=":
        position = text.find(separator)
        while position >= 0:
            end = position
            while end and text[end - 1].isspace():
                end -= 1
            before = text[max(0, end - 16) : end].lower()
            if any(word in before for word in _ASSIGNMENT_WORDS):
                return True
            position = text.find(separator, position + 1)
    return False


def _sub(
    pattern: re.Pattern[str], text: str, decide: Callable[[re.Match[str]], str | None]
) -> tuple[str, int]:
    """``pattern.sub`` where ``decide`` returns the replacement, or None to keep the match."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        replacement = decide(match)
        if replacement is None:
            return match.group()
        count += 1
        return replacement

    return pattern.sub(replace, text), count


def _redact_emails(text: str) -> tuple[str, int]:
    # Find the domain part from its '@' (a fast literal search), then walk back over the local part.
    pieces: list[str] = []
    count = 0
    position = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        while start > position and text[start - 1] in _EMAIL_LOCAL_CHARS:
            start -= 1
        if start == match.start():
            continue
        pieces.append(text[position:start])
        pieces.append("[EMAIL]")
        position = match.end()
        count += 1
    if not count:
        return text, 0
    pieces.append(text[position:])
    return "".join(pieces), count


def _generated_token(match: re.Match[str]) -> str | None:
    token = match.group()
    has_upper = has_lower = has_digit = False
    for char in token:
        if "A" <= char <= "Z":
            has_upper = True
        elif "a" <= char <= "z":
            has_lower = True
        elif "0" <= char <= "9":
            has_digit = True
    return "[KEY]" if has_upper and has_lower and has_digit else None


def _assigned_value(match: re.Match[str]) -> str | None:
    value = match.group(1)
    if value.startswith("[") and value.endswith("]"):
        return None
    found = match.group()
    cut = match.start(1) - match.start()
    return found[:cut] + "[KEY]" + found[cut + len(value) :]


def _classify_number(match: re.Match[str]) -> str | None:
    found = match.group()
    digits = "".join(char for char in found if "0" <= char <= "9")
    count = len(digits)
    if 13 <= count <= 19 and found[0] != "+" and luhn_valid(digits):
        return "[CARD]"
    if 9 <= count <= 15 and not _DATE_START.match(found):
        grouped = found[0] == "+" or "(" in found or any(char in " .-" for char in found)
        if grouped or count in (10, 11):
            return "[PHONE]"
    return None


_TEXT_FIELDS = ("prompt", "response", "reference", "error")


def redact_fields(fields: dict[str, Any], redactor: Redactor) -> int:
    """Redact, in place, every text of a trace record given as a dict (``TraceRecord``'s fields):
    prompt, response, reference, error, message contents, contexts and metadata values. Returns the
    number of replacements and adds it to ``redactions``.

    All the record's texts are first asked together whether they could hold anything at all (one fast
    pass); only then is each text searched.
    """
    texts: list[str] = [text for name in _TEXT_FIELDS if (text := fields.get(name))]
    texts += [message["content"] for message in fields.get("input_messages") or ()]
    texts += fields.get("contexts") or ()
    _strings(fields.get("metadata"), texts)
    if not redactor.might_contain("\x00".join(texts)):
        return 0
    found = 0
    for name in _TEXT_FIELDS:
        text = fields.get(name)
        if text:
            fields[name], count = redactor.redact(text)
            found += count
    for message in fields.get("input_messages") or ():
        message["content"], count = redactor.redact(message["content"])
        found += count
    for key in ("contexts", "metadata"):
        if fields.get(key):
            fields[key], count = redactor.redact_value(fields[key])
            found += count
    if found:
        fields["redactions"] = fields.get("redactions", 0) + found
    return found


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def redact_trace(record: TraceRecord, redactor: Redactor) -> TraceRecord:
    """The record with PII replaced in every text it carries (the same record when there is none);
    ``redactions`` counts the replacements."""
    texts: list[str] = [text for name in _TEXT_FIELDS if (text := getattr(record, name))]
    texts += [message.content for message in record.input_messages]
    texts += record.contexts
    _strings(record.metadata, texts)
    if not redactor.might_contain("\x00".join(texts)):
        return record
    fields = record.model_dump(mode="json")
    if not redact_fields(fields, redactor):
        return record
    return TraceRecord.model_validate(fields)


def redact_feedback(record: FeedbackRecord, redactor: Redactor) -> FeedbackRecord:
    if not record.comment:
        return record
    comment, count = redactor.redact(record.comment)
    return record.model_copy(update={"comment": comment}) if count else record
