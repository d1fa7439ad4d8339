"""PII redaction: what is found is replaced by its kind, what is not PII stays as it was."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.redaction import _ASSIGNMENT, Redactor, luhn_valid, redact_trace
from shared.events import ChatMessage, TraceRecord

REDACTOR = Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+shop@example.co.uk today", "write to [EMAIL] today"),
        ("ADMIN@EXAMPLE.COM.", "[EMAIL]."),
        ("call +1 (415) 555-0100 now", "call [PHONE] now"),
        ("call 415-555-0100", "call [PHONE]"),
        ("call 415.555.0100", "call [PHONE]"),
        ("ring +44 20 7946 0958", "ring [PHONE]"),
        ("mobile 07946 095812", "mobile [PHONE]"),
        ("+442079460958", "[PHONE]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("card 4012888888881881", "card [CARD]"),
        ("amex 3782 822463 10005", "amex [CARD]"),
        ("key sk-proj-AbCdEf1234567890abcdefGH", "key [KEY]"),
        ("langfuse sk-lf-1234567890abcdef1234", "langfuse [KEY]"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [KEY]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [KEY]"),
        ("gh ghp_16C7e42F292c6912E7710c838347Ae178B4a", "gh [KEY]"),
        ("slack xoxb-123456789012-abcdefghij", "slack [KEY]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt [KEY]",
        ),
        ("password: hunter2hunter", "password: [KEY]"),
        ('{"api_key": "abc123def456"}', '{"api_key": "[KEY]"}'),
        ("token Xy7kP2mQ9vL4nR8sT1wZ3bC6dF0gH5jK end", "token [KEY] end"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "[KEY]",
        ),
    ],
)
def test_pii_is_replaced_by_its_kind(text: str, expected: str) -> None:
    redacted, count = REDACTOR.redact(text)
    assert redacted == expected
    assert count >= 1


@pytest.mark.parametrize(
    "text",
    [
        "You can return unworn shoes within 30 days of delivery for a full refund.",
        "On 2024-11-20 10:30 we shipped 3 items; order 12345 costs $1,299.99.",
        "Version 1.2.3 runs on 192.168.1.1 port 8080.",
        "card 4111 1111 1111 1112 fails the Luhn check",
        "trace 5ba25ba5822992dcc9dc019528bc14cb is a lowercase hex id, not a key",
        "an @ sign alone, or user@localhost, is not an address",
        "state-of-the-art retrieval-augmented generation",
        "",
    ],
)
def test_text_without_pii_is_left_alone(text: str) -> None:
    assert REDACTOR.redact(text) == (text, 0)


# Pieces of texts around password-like assignments: the words, quotes, whitespace runs long and short,
# and enough separators to take both of the fast check's paths (a few, and more than a few dozen).
_PIECES = st.sampled_from(
    [
        "password",
        "Passwd",
        "PWD",
        "api key",
        "API_KEY",
        "apikey",
        "secret_key",
        "Secret",
        "access-token",
        "auth_token",
        "token",
        "tokens",
        ":",
        "=",
        " : ",
        "= ",
        '"',
        "'",
        " ",
        "\t",
        "\n",
        " " * 20,
        "\n\t  \r\n" * 5,
        "hunter2hunter",
        "sw0rdfish!",
        "value",
        "x",
        "{",
        "}",
        ",",
        "10:30",
        "a=b",
        "https://example.com/a?b=c",
        "é",
        "İ",
        "K",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_the_fast_check_never_misses_an_assignment(text: str) -> None:
    # might_contain is the question asked before any search: a "no" for a text holding an assignment
    # would let a password through.
    if _ASSIGNMENT.search(text):
        assert REDACTOR.might_contain(text)
        assert REDACTOR.redact(text)[1] >= 1


def test_an_assignment_far_from_its_separator_is_found() -> None:
    text = 'note\n"password"' + " \t\n" * 40 + ": hunter2hunter and more"
    assert REDACTOR.might_contain(text)
    assert REDACTOR.redact(text) == ('note\n"password"' + " \t\n" * 40 + ": [KEY] and more", 1)
    many = "k=v, " * 40 + "pwd = sw0rdfish!"
    assert REDACTOR.redact(many) == ("k=v, " * 40 + "pwd = [KEY]", 1)


def test_redacting_twice_finds_nothing_more() -> None:
    once, count = REDACTOR.redact(
        "mail a@b.io, card 4111111111111111, call 415-555-0100, password=swordfish1"
    )
    assert count == 4
    assert REDACTOR.redact(once) == (once, 0)


def test_configured_patterns_are_redacted_by_name() -> None:
    redactor = Redactor({"employee_id": r"EMP-\d{6}", "ticket": r"TCK-[A-Z]{3}"})
    assert redactor.redact("EMP-123456 opened TCK-ABC") == ("[EMPLOYEE_ID] opened [TICKET]", 2)


def test_a_pattern_that_is_not_a_regex_is_refused() -> None:
    with pytest.raises(ValueError, match="broken"):
        Redactor({"broken": "(unclosed"})


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


def test_every_text_of_a_trace_is_redacted_and_counted() -> None:
    record = TraceRecord(
        trace_id="t" * 32,
        project_id="p",
        prompt="I am bob@example.com",
        input_messages=[ChatMessage(role="user", content="I am bob@example.com")],
        response="Your card 4111 1111 1111 1111 is saved",
        contexts=["Customer phone: +1 415 555 0100"],
        metadata={"note": {"email": "eve@example.org"}, "count": 3},
        error="auth failed for key AKIAIOSFODNN7EXAMPLE",
    )
    redacted = redact_trace(record, REDACTOR)
    assert redacted.prompt == "I am [EMAIL]"
    assert redacted.input_messages[0].content == "I am [EMAIL]"
    assert redacted.response == "Your card [CARD] is saved"
    assert redacted.contexts == ["Customer phone: [PHONE]"]
    assert redacted.metadata == {"note": {"email": "[EMAIL]"}, "count": 3}
    assert redacted.error == "auth failed for key [KEY]"
    assert redacted.redactions == 6
    assert redact_trace(redacted, REDACTOR) is redacted, "nothing more to find"
