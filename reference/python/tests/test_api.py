"""The package's own contract: round trips, file objects, errors, nothing left behind."""

import io
import os
import pathlib

import pytest

import coffer
from conftest import chat_like

KEY = "a5" * 32
OTHER_KEY = "5a" * 32


def encrypted(plain: bytes, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    coffer.encrypt(io.BytesIO(plain), out, key=KEY, format=fmt, **options)
    return out.getvalue()


PLAIN = chat_like(3 * 65536 + 17)


@pytest.mark.parametrize("fmt", ["crypt15", "coffer"])
@pytest.mark.parametrize("size", [0, 1, 65536, len(PLAIN)])
def test_round_trip_through_file_objects(fmt, size):
    data = encrypted(PLAIN[:size], fmt)
    out = io.BytesIO()
    summary = coffer.decrypt(io.BytesIO(data), out, key=KEY)
    assert out.getvalue() == PLAIN[:size]
    assert summary["format"] == fmt
    assert summary["output_bytes"] == size
    assert summary["input_bytes"] == len(data)


@pytest.mark.parametrize("fmt", ["crypt15", "coffer"])
def test_round_trip_through_paths(tmp_path: pathlib.Path, fmt):
    (tmp_path / "plain").write_bytes(PLAIN)
    coffer.encrypt(tmp_path / "plain", tmp_path / "backup", key=KEY, format=fmt)
    coffer.decrypt(str(tmp_path / "backup"), tmp_path / "out", key=KEY)
    assert (tmp_path / "out").read_bytes() == PLAIN
    assert coffer.verify(tmp_path / "backup", key=KEY)["output_bytes"] == len(PLAIN)


def test_coffer_uncompressed_and_levels():
    for options in ({"compress": "none"}, {"compress": "zstd", "zstd_level": 19}):
        data = encrypted(PLAIN, "coffer", **options)
        # "zstd" writes independent frames with a seek table (spec/format.md §8.2).
        written = {"zstd": "zstd_seekable"}.get(options["compress"], options["compress"])
        assert coffer.inspect(io.BytesIO(data))["compression"] == written
        out = io.BytesIO()
        coffer.decrypt(io.BytesIO(data), out, key=KEY)
        assert out.getvalue() == PLAIN


def test_crypt15_stored_payload_and_raw_decrypt():
    stored = encrypted(PLAIN, "crypt15", stored=True)
    out = io.BytesIO()
    # Stored text is neither zlib nor ZIP: written as is, reported as "unknown".
    assert coffer.decrypt(io.BytesIO(stored), out, key=KEY)["payload"] == "unknown"
    assert out.getvalue() == PLAIN
    zlib_file = encrypted(PLAIN, "crypt15", level=6)
    raw = io.BytesIO()
    coffer.decrypt(io.BytesIO(zlib_file), raw, key=KEY, decompress=False)
    import zlib

    assert zlib.decompress(raw.getvalue()) == PLAIN


def test_key_forms(samples, root_key_hex):
    backup = samples / "msgstore.db.crypt15"
    grouped = "-".join(root_key_hex[i : i + 4] for i in range(0, 64, 4))
    for key in (
        samples / "encrypted_backup.key",
        str(samples / "encrypted_backup.key"),
        (samples / "encrypted_backup.key").read_bytes(),
        root_key_hex,
        root_key_hex.upper(),
        grouped,
        root_key_hex.encode(),
    ):
        assert coffer.verify(backup, key=key)["md5"] == "verified", key


@pytest.mark.parametrize(
    "key, error",
    [
        ("ab" * 31, coffer.MalformedError),
        ("zz" * 32, coffer.MalformedError),
        ("/no/such/key/file", coffer.MalformedError),
        (b"\x00" * 40, coffer.MalformedError),
    ],
)
def test_bad_keys(samples, key, error):
    with pytest.raises(error) as raised:
        coffer.verify(samples / "msgstore.db.crypt15", key=key)
    assert raised.value.error_class == "malformed"


def test_wrong_key_is_wrong_key_for_both_formats(samples):
    for data in (encrypted(PLAIN, "crypt15"), encrypted(PLAIN, "coffer")):
        with pytest.raises(coffer.WrongKeyError) as raised:
            coffer.decrypt(io.BytesIO(data), io.BytesIO(), key=OTHER_KEY)
        assert raised.value.error_class == "wrong_key"
    # A crypt12/14 key file cannot open crypt15.
    with pytest.raises(coffer.WrongKeyError):
        coffer.verify(samples / "msgstore.db.crypt15", key=samples / "key")


@pytest.mark.parametrize("fmt", ["crypt15", "coffer"])
def test_every_damage_has_its_class(fmt):
    data = encrypted(PLAIN, fmt)
    cases = {
        "flipped byte in the body": (data[:300] + bytes([data[300] ^ 1]) + data[301:], coffer.CorruptError),
        "last 100 bytes cut": (data[:-100], coffer.TruncatedError),
        "bytes appended": (data + b"extra", coffer.TrailingDataError),
        "not a backup": (b"SQLite format 3\x00" + b"\x00" * 200, coffer.MalformedError),
        "empty": (b"", coffer.TruncatedError),
    }
    for name, (damaged, error) in cases.items():
        out = io.BytesIO()
        with pytest.raises(error) as raised:
            coffer.decrypt(io.BytesIO(damaged), out, key=KEY)
        assert raised.value.error_class in coffer.ERROR_CLASSES, name
        assert isinstance(raised.value, coffer.ERROR_CLASSES[raised.value.error_class]), name
        assert out.getvalue() == b"", f"{name}: plaintext left in the destination"


def test_error_classes_table():
    assert set(coffer.ERROR_CLASSES) == {
        "wrong_key", "corrupt", "truncated", "trailing_data", "unsupported", "malformed", "io",
    }
    for name, kind in coffer.ERROR_CLASSES.items():
        assert kind.error_class == name
        assert issubclass(kind, coffer.CofferError)


def test_failed_decrypt_leaves_no_file(tmp_path: pathlib.Path):
    damaged = encrypted(PLAIN, "crypt15")[:-1]
    (tmp_path / "bad.crypt15").write_bytes(damaged)
    with pytest.raises(coffer.TruncatedError):
        coffer.decrypt(tmp_path / "bad.crypt15", tmp_path / "out.db", key=KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.crypt15"]


def test_seekable_destination_is_rolled_back():
    damaged = encrypted(PLAIN, "coffer")[:-1]
    out = io.BytesIO(b"already here")
    out.seek(0, io.SEEK_END)
    with pytest.raises(coffer.TruncatedError):
        coffer.decrypt(io.BytesIO(damaged), out, key=KEY)
    assert out.getvalue() == b"already here"


class Pipe(io.RawIOBase):
    """A write-only, unseekable destination that records what reached it."""

    def __init__(self):
        self.received = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.received += b
        return len(b)


def test_unseekable_destination_gets_nothing_on_failure():
    damaged = encrypted(PLAIN, "crypt15")
    damaged = damaged[:-40] + bytes([damaged[-40] ^ 1]) + damaged[-39:]
    pipe = Pipe()
    with pytest.raises(coffer.CorruptError):
        coffer.decrypt(io.BytesIO(damaged), pipe, key=KEY)
    assert pipe.received == b""
    coffer.decrypt(io.BytesIO(encrypted(PLAIN, "crypt15")), pipe, key=KEY)
    assert bytes(pipe.received) == PLAIN


def test_existing_destination_is_refused_unless_overwrite(tmp_path: pathlib.Path):
    (tmp_path / "b").write_bytes(encrypted(PLAIN, "coffer"))
    (tmp_path / "out").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        coffer.decrypt(tmp_path / "b", tmp_path / "out", key=KEY)
    assert (tmp_path / "out").read_bytes() == b"mine"
    coffer.decrypt(tmp_path / "b", tmp_path / "out", key=KEY, overwrite=True)
    assert (tmp_path / "out").read_bytes() == PLAIN


class Failing(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, b):
        raise ConnectionResetError("the network went away")


def test_the_callers_exception_comes_out_unchanged():
    with pytest.raises(ConnectionResetError, match="network went away"):
        coffer.decrypt(Failing(), io.BytesIO(), key=KEY)

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        coffer.encrypt(io.BytesIO(PLAIN), io.BytesIO(), key=KEY, progress=stop)


def test_progress_reports_bytes_read():
    data = encrypted(chat_like(9 << 20), "crypt15")
    seen = []
    coffer.verify(io.BytesIO(data), key=KEY, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == len(data)


def test_text_mode_and_wrong_types_are_type_errors(tmp_path: pathlib.Path):
    (tmp_path / "t").write_text("hello")
    with open(tmp_path / "t") as text, pytest.raises(TypeError, match="binary mode"):
        coffer.decrypt(text, io.BytesIO(), key=KEY)
    with pytest.raises(TypeError):
        coffer.decrypt(42, io.BytesIO(), key=KEY)
    with pytest.raises(TypeError):
        coffer.verify(io.BytesIO(b""), key=42)


@pytest.mark.parametrize(
    "options",
    [
        {"format": "crypt16"},
        {"format": "coffer", "like": "x"},
        {"format": "coffer", "level": 1},
        {"compress": "zstd"},
        {"level": 10},
        {"format": "coffer", "zstd_level": 20},
        {"iv": b"short"},
        {"iv": "zz" * 16},
        {"jid_suffix": "123"},
        {"keep_iv": True},
        {"md5": False},
        {"stored": True, "level": 1},
    ],
)
def test_bad_encrypt_options_are_value_errors(options):
    out = io.BytesIO()
    with pytest.raises(ValueError):
        coffer.encrypt(io.BytesIO(PLAIN), out, key=KEY, **options)
    assert out.getvalue() == b""


def test_fixed_iv_is_deterministic_and_inspectable():
    iv = bytes(range(16))
    a = encrypted(PLAIN, "crypt15", iv=iv, app_version="2.24.1.1", jid_suffix="42")
    b = encrypted(PLAIN, "crypt15", iv=iv.hex(), app_version="2.24.1.1", jid_suffix="42")
    assert a == b
    info = coffer.inspect(io.BytesIO(a))
    assert info["format"] == "crypt15"
    assert info["header"]["iv"] == iv.hex()
    fields = {f["name"]: f["value"] for f in info["header"]["prefix"]["metadata"]}
    assert fields["app_version"] == "2.24.1.1" and fields["jid_suffix"] == "42"


def test_inspect_coffer_without_the_key(tmp_path: pathlib.Path):
    (tmp_path / "f").write_bytes(encrypted(PLAIN, "coffer", compress="none"))
    info = coffer.inspect(tmp_path / "f")
    assert info["format"] == "coffer" and info["check_ok"] is True
    assert info["payload_bytes"] == len(PLAIN)
    assert info["metadata"]["generator"].startswith("coffer-python ")
    with pytest.raises(coffer.MalformedError, match="SQLite"):
        coffer.inspect(io.BytesIO(b"SQLite format 3\x00" + bytes(100)))
    # Anything else is read as a crypt15 header: its first byte is the header's length.
    with pytest.raises(coffer.TruncatedError, match="111 header bytes"):
        coffer.inspect(io.BytesIO(b"not a backup at all, not even close"))


def test_open_streams_authenticated_plaintext():
    data = encrypted(PLAIN, "coffer")
    with coffer.open(io.BytesIO(data), key=KEY) as reader:
        assert reader.compression == "zstd_seekable"
        parts = []
        while chunk := reader.read(10_000):
            parts.append(chunk)
    assert reader.closed
    assert b"".join(parts) == PLAIN
    with pytest.raises(ValueError):
        reader.read()


def test_open_reports_truncation_at_the_end_and_refuses_crypt15():
    data = encrypted(PLAIN, "coffer", compress="none")
    reader = coffer.open(io.BytesIO(data[:-50]), key=KEY)
    with pytest.raises(coffer.TruncatedError):
        reader.read()
    with pytest.raises(coffer.UnsupportedError, match="use coffer.decrypt"):
        coffer.open(io.BytesIO(encrypted(PLAIN, "crypt15")), key=KEY)
    with pytest.raises(coffer.WrongKeyError):
        coffer.open(io.BytesIO(data), key=OTHER_KEY)


def test_stubs_and_marker_are_installed():
    package = pathlib.Path(coffer.__file__).parent
    assert (package / "py.typed").is_file()
    stub = (package / "__init__.pyi").read_text()
    for name in coffer.__all__:
        assert name in stub, f"{name} is missing from the type stubs"
    assert coffer.__version__ == "0.1.0"
    assert os.path.basename(coffer.__file__) == "__init__.py"
