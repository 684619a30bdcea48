"""Long replies split at line boundaries into messages Telegram accepts (pure)."""

from __future__ import annotations

from bot.replies import split_message, utf16_length


def test_split_message_keeps_lines_whole_and_every_character() -> None:
    """Pieces end at line ends, fit the limit, and join back to the original text."""
    text = "\n".join(f"line {n}: " + "x" * (n % 50) for n in range(2000))
    parts = split_message(text, limit=1000)
    assert len(parts) > 1
    assert all(utf16_length(part) <= 1000 for part in parts)
    assert "\n".join(parts) == text
    assert split_message("short") == ["short"]
    # A single line longer than the limit is cut inside the line, counted in UTF-16 units.
    emoji_line = "😀" * 3000  # two units each
    assert [utf16_length(p) for p in split_message(emoji_line)] == [4096, 1904]
