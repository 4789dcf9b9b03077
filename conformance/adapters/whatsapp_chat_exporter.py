#!/usr/bin/env python3
"""Shim adapter (spec/conformance.md §7) for whatsapp-chat-exporter from PyPI (the `wtsexporter`
command, with its `crypt15` extra: pycryptodome and javaobj-py3): crypt15 decryption through
its library function `Whatsapp_Chat_Exporter.android_crypt.decrypt_backup`, called in process
exactly as the command calls it for `-b msgstore.db.crypt15 -k KEY` (Crypt.CRYPT15,
DbType.MESSAGE; a 64-digit key as `bytes.fromhex`, a key file as a stream with
`keyfile_stream=True`). The command itself wants a whole WhatsApp folder and goes on to
export the chats, so it is not run. It declares only what the tool does that the suite can
check: decrypting crypt15, with a 64-digit key or with a key file's bytes.

The tool has no error classes of its own for crypt15 (it wraps every failure it foresees in
one `DecryptionError`, and lets zlib's error through unwrapped), but its messages tell a few
diagnoses apart, and only those are mapped:
- "Decryption/Authentication failed. Ensure you are using the correct key." (the GCM tag
  does not verify, whatever the cause: the tool reads no MD5) -> `wrong_key`;
- `InvalidFileFormatError` "must be at least 131 bytes" and "too short to contain a valid
  GCM tag" (size checks) -> `truncated`;
- "Key is correct, but decrypted data is not a valid compressed stream" and "Data is valid and
  decompressed, but it is not a SQLite database" (the tool takes only zlib-compressed SQLite
  payloads, and says the data is intact) -> `unsupported`;
- anything else (zlib's "likely corrupted" error, a key file javaobj cannot read) -> `corrupt`.
Every refusal carries the tool's message as `detail` (200 characters at most). A database the
tool writes is sent as accepted, whatever the file was: the suite grades that honestly.

What the tool reads, so that its results can be understood (0.13.1): the header ends at
byte[0] + 2 (a 1-byte length and the stray 01, or by luck a 2-byte length 0x80..0xff 01) and
the IV is bytes 8..24, both without parsing the BackupPrefix; the tag is always the 16 bytes
before the last 16, which are never checked (no MD5, no layout B, no trailing-data check); the
payload must be zlib (0x78) and inflate to something starting "SQLite" (bytes after the zlib
stream are ignored); a file under 131 bytes is refused before any of this.

Usage: whatsapp_chat_exporter.py   (run with the python of the venv that
conformance/adapters/setup.sh makes: .venv/whatsapp-chat-exporter/bin/python)
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import zlib
from importlib.metadata import version

from Whatsapp_Chat_Exporter import android_crypt
from Whatsapp_Chat_Exporter.utility import Crypt, DbType

NAME = "whatsapp-chat-exporter (android_crypt.decrypt_backup)"
VERSION = version("whatsapp-chat-exporter")


def refusal(error_class, exception):
    return {"ok": False, "error": error_class, "detail": ("%s: %s" % (type(exception).__name__, exception))[:200]}


def classify(exception):
    cause = exception.__cause__ if isinstance(exception, android_crypt.DecryptionError) else None
    text = str(exception)
    if isinstance(cause, android_crypt.InvalidFileFormatError) or "too short to contain a valid GCM tag" in text:
        return "truncated"
    if "Decryption/Authentication failed" in text:
        return "wrong_key"
    if "not a valid compressed stream" in text or "not a SQLite database" in text:
        return "unsupported"
    return "corrupt"


def left_behind(answer, output):
    """A refusal also reports what the tool wrote before failing (spec/conformance.md §7)."""
    if os.path.exists(output) and os.path.getsize(output) > 0:
        with open(output, "rb") as f:
            answer["plaintext"] = f.read().hex()
    return answer


def decrypt(request):
    if "key_file" in request:
        key, keyfile_stream = io.BytesIO(bytes.fromhex(request["key_file"])), True
    else:
        key, keyfile_stream = bytes.fromhex(request["key"]), False
    database = bytes.fromhex(request["file"])
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "msgstore.db")
        try:
            # The tool logs through `logging` (stderr); keep anything else off the protocol's stdout.
            with contextlib.redirect_stdout(sys.stderr):
                android_crypt.decrypt_backup(database, key, output, Crypt.CRYPT15, False, DbType.MESSAGE,
                                             keyfile_stream=keyfile_stream)
        except (android_crypt.DecryptionError, zlib.error) as e:
            return left_behind(refusal(classify(e), e), output)
        except Exception as e:  # what the tool does not foresee (e.g. javaobj on a bad key file)
            return left_behind(refusal("corrupt", e), output)
        if not os.path.exists(output):
            return {"ok": False, "error": "corrupt", "detail": "decrypt_backup returned without writing the database"}
        with open(output, "rb") as f:
            return {"ok": True, "plaintext": f.read().hex()}


def decrypt_file(request):
    """The bench's file operation: as the tool's command does, read the whole backup, then
    decrypt it into the output path."""
    with open(request["input"], "rb") as f:
        database = f.read()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            android_crypt.decrypt_backup(database, bytes.fromhex(request["key"]), request["output"], Crypt.CRYPT15,
                                         False, DbType.MESSAGE)
    except (android_crypt.DecryptionError, zlib.error) as e:
        return refusal(classify(e), e)
    except Exception as e:
        return refusal("corrupt", e)
    return {"ok": True}


for line in sys.stdin:
    request = json.loads(line)
    if request.get("type") == "hello":
        answer = {"type": "hello", "protocol": "coffer-shim/1", "name": NAME, "version": VERSION,
                  "capabilities": {"decrypt": ["crypt15"], "encrypt": [], "decrypt_file": ["crypt15"],
                                   "vault_client": False}}
    else:
        if request.get("op") == "decrypt" and request.get("format") == "crypt15":
            answer = decrypt(request)
        elif request.get("op") == "decrypt_file" and request.get("format") == "crypt15":
            answer = decrypt_file(request)
        else:
            answer = {"ok": False, "unimplemented": True}
        answer.update({"type": "response", "id": request["id"]})
    print(json.dumps(answer), flush=True)
