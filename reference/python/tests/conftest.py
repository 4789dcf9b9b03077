"""Shared fixtures: the real WhatsApp-made samples and the real wa-crypt-tools.

The wa-crypt-tools tests need COFFER_WA_CRYPT_TOOLS (the venv bin directory holding
wadecrypt and waencrypt, set by scripts/test.sh). Without it they fail, unless the run opted
out by name with COFFER_SKIP_INTEROP=1, and then they are reported as skipped.
"""

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
SAMPLES = REPO / "vectors" / "external" / "wa-crypt-tools"


@pytest.fixture(scope="session")
def samples() -> pathlib.Path:
    assert (SAMPLES / "msgstore.db.crypt15").is_file(), f"no samples in {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def wa_tools() -> pathlib.Path:
    if os.environ.get("COFFER_SKIP_INTEROP") == "1":
        pytest.skip("COFFER_SKIP_INTEROP=1: no wa-crypt-tools")
    where = os.environ.get("COFFER_WA_CRYPT_TOOLS")
    assert where, (
        "COFFER_WA_CRYPT_TOOLS is not set (the venv bin directory with wadecrypt; "
        "scripts/test.sh sets it, COFFER_SKIP_INTEROP=1 opts out)"
    )
    tools = pathlib.Path(where)
    for tool in ("wadecrypt", "waencrypt"):
        assert (tools / tool).is_file(), f"{tools / tool} is missing"
    return tools


@pytest.fixture(scope="session")
def root_key_hex(samples: pathlib.Path) -> str:
    # encrypted_backup.key is a Java-serialized byte[]: the 32 key bytes are its last ones.
    return (samples / "encrypted_backup.key").read_bytes()[-32:].hex()


def chat_like(size: int, seed: int = 7) -> bytes:
    """Compressible text that looks like a chat database's contents, `size` bytes."""
    import random

    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(4000)
    ]
    block = " ".join(rng.choice(words) for _ in range(200_000)).encode()
    out = bytearray()
    n = 0
    while len(out) < size:
        out += block[n % 97 :]
        n += 1
    return bytes(out[:size])


def which_tmp_free(path: pathlib.Path) -> int:
    return shutil.disk_usage(path).free
