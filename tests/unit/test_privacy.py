"""Sealed chat ids (AES-GCM from `cryptography`): hidden, bound to their row, rotatable."""

from __future__ import annotations

from bot.privacy import ChatSealer, ThumbnailSealer, open_legacy_chat_id, user_key
from tests.legacy_seal import seal_chat_id_v0

ALICE, BOB = "a" * 64, "b" * 64


def test_a_sealed_chat_id_opens_only_for_its_own_row_and_key() -> None:
    """Hidden, different every time, bound to the user key, refused when altered."""
    sealer = ChatSealer([b"secret"])
    sealed = sealer.seal(123_456_789, ALICE)
    assert "123456789" not in sealed
    assert sealed != sealer.seal(123_456_789, ALICE)
    assert sealer.open(sealed, ALICE) == 123_456_789
    assert sealer.open(sealed, BOB) is None  # copied into another user's row
    assert ChatSealer([b"other secret"]).open(sealed, ALICE) is None
    assert sealer.open(sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB"), ALICE) is None
    assert sealer.open("v1.nokey.AAAA", ALICE) is None
    assert sealer.open("not base64!", ALICE) is None


def test_the_length_does_not_tell_the_number_of_digits() -> None:
    """A 5-digit and a 13-digit chat id seal to texts of the same length."""
    sealer = ChatSealer([b"secret"])
    assert len(sealer.seal(12_345, ALICE)) == len(sealer.seal(-1_001_234_567_890, ALICE))
    assert sealer.open(sealer.seal(-1_001_234_567_890, ALICE), ALICE) == -1_001_234_567_890


def test_keys_rotate_by_key_id() -> None:
    """After rotation new values use the new key; values of the old key still open."""
    old = ChatSealer([b"old key"])
    rotated = ChatSealer([b"new key", b"old key"])
    before = old.seal(42, ALICE)
    after = rotated.seal(42, ALICE)
    assert rotated.open(before, ALICE) == 42
    assert rotated.is_current(after) and not rotated.is_current(before)
    assert after.split(".")[1] == rotated.current_key_id != old.current_key_id
    assert old.open(after, ALICE) is None


def test_values_in_the_old_format_open_for_re_sealing() -> None:
    """The pre-v1 format (HMAC stream cipher) still opens with its secret, and only then."""
    legacy = seal_chat_id_v0(987_654, b"user-secret")
    assert open_legacy_chat_id(legacy, b"user-secret") == 987_654
    assert open_legacy_chat_id(legacy, b"another") is None
    assert open_legacy_chat_id(ChatSealer([b"user-secret"]).seal(1, ALICE), b"user-secret") is None


def test_user_keys_are_stable_hmacs() -> None:
    assert user_key(42, b"k") == user_key(42, b"k") != user_key(43, b"k")
    assert len(user_key(42, b"k")) == 64


def test_a_sealed_thumbnail_is_not_a_jpeg_and_opens_only_for_its_own_row() -> None:
    """Bound to its user and consultation, under its own keys (not a chat id's)."""
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    sealer = ThumbnailSealer([b"secret"])
    sealed = sealer.seal(jpeg, ALICE, 7)
    assert b"\xff\xd8" not in sealed.encode() and "JFIF" not in sealed
    assert sealer.open(sealed, ALICE, 7) == jpeg
    assert sealer.open(sealed, BOB, 7) is None  # another person's row
    assert sealer.open(sealed, ALICE, 8) is None  # another consultation
    assert ThumbnailSealer([b"other secret"]).open(sealed, ALICE, 7) is None
    chat = ChatSealer([b"secret"]).seal(12345, ALICE)
    assert sealer.open(chat, ALICE, 7) is None  # a chat id never opens as a thumbnail
