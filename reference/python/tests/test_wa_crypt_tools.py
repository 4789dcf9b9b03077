"""Against the real wa-crypt-tools (PyPI), on the real WhatsApp-made backups."""

import io
import pathlib
import subprocess

import pytest

import coffer
from conftest import chat_like

LEGACY = ["msgstore.db.crypt14", "msgstore-noexpiry.db.crypt14", "msgstore.db.crypt12"]


def run(tool: pathlib.Path, *args) -> None:
    done = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"{tool.name} {args}: {done.stderr[-2000:]}"


@pytest.mark.parametrize(
    "name, key",
    [("msgstore.db.crypt15", "encrypted_backup.key")] + [(n, "key") for n in LEGACY],
)
def test_decrypts_every_sample_to_the_bytes_wadecrypt_gives(samples, wa_tools, tmp_path, name, key):
    theirs = tmp_path / "theirs.db"
    run(wa_tools / "wadecrypt", samples / key, samples / name, theirs)
    ours = io.BytesIO()
    summary = coffer.decrypt(samples / name, ours, key=samples / key)
    assert ours.getvalue() == theirs.read_bytes(), name
    assert ours.getvalue() == (samples / "msgstore.db").read_bytes(), name
    assert summary["md5"] == "verified"


def test_reencrypts_the_whatsapp_backup_byte_for_byte_as_waencrypt_does(samples, wa_tools, tmp_path):
    original = (samples / "msgstore.db.crypt15").read_bytes()
    iv = coffer.inspect(samples / "msgstore.db.crypt15")["header"]["iv"]
    theirs = tmp_path / "theirs.crypt15"
    run(
        wa_tools / "waencrypt",
        samples / "encrypted_backup.key",
        samples / "msgstore.db",
        theirs,
        "--reference",
        samples / "msgstore.db.crypt15",
        "--iv",
        iv,
    )
    ours = io.BytesIO()
    coffer.encrypt(
        samples / "msgstore.db",
        ours,
        key=samples / "encrypted_backup.key",
        like=samples / "msgstore.db.crypt15",
        keep_iv=True,
    )
    assert ours.getvalue() == theirs.read_bytes() == original
    # The same through the `iv` argument instead of keep_iv.
    again = io.BytesIO()
    coffer.encrypt(
        samples / "msgstore.db", again, key=samples / "encrypted_backup.key",
        like=samples / "msgstore.db.crypt15", iv=iv,
    )
    assert again.getvalue() == original


@pytest.mark.parametrize("size", [0, 1, 4096, 3 << 20])
def test_each_opens_what_the_other_writes(wa_tools, tmp_path, root_key_hex, size):
    plain = chat_like(size, seed=size)
    (tmp_path / "plain").write_bytes(plain)
    key = tmp_path / "encrypted_backup.key"
    key.write_bytes(
        bytes.fromhex("aced0005757200025b42acf317f8060854e0020000787000000020") + bytes.fromhex(root_key_hex)
    )
    coffer.encrypt(tmp_path / "plain", tmp_path / "ours.crypt15", key=key)
    run(wa_tools / "wadecrypt", key, tmp_path / "ours.crypt15", tmp_path / "by-wadecrypt")
    assert (tmp_path / "by-wadecrypt").read_bytes() == plain
    run(wa_tools / "waencrypt", key, tmp_path / "plain", tmp_path / "theirs.crypt15")
    coffer.decrypt(tmp_path / "theirs.crypt15", tmp_path / "by-coffer", key=key)
    assert (tmp_path / "by-coffer").read_bytes() == plain
