from __future__ import annotations

from gateway.auth.passwords import check_format, hash_password, verify_password


def test_a_hash_verifies_its_password_only() -> None:
    encoded = hash_password("correct horse ü")
    assert check_format(encoded)
    assert verify_password("correct horse ü", encoded)
    assert not verify_password("correct horse u", encoded)
    assert not verify_password("", encoded)


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


def test_malformed_hashes_match_nothing() -> None:
    for bad in ["", "plain", "$scrypt$ln=15,r=8,p=1$$", "$scrypt$ln=99,r=8,p=1$AA$AA"]:
        assert not check_format(bad) or not verify_password("x", bad)
    assert not check_format("$scrypt$ln=30,r=8,p=1$AAAA$AAAA")  # absurd cost: refused at load
