#!/usr/bin/env python3
"""A model shim adapter in a second language: a reader and writer of Coffer files
(spec/format.md) written from the spec's text alone, speaking the shim protocol of
spec/conformance.md §7 on stdin and stdout.

It is kept small on purpose, as a model for adapters of other tools, and its reading
procedure is one function per step of format.md §7 so that `conformance/tests/doubles/
format_mutants.py` can break one step at a time (the mutation table of conformance.md §10).

Needs Python 3.11 with `cryptography` (AES-GCM, HKDF) and `zstandard` (RFC 8878) from PyPI.

Usage: coffer_python.py   (then speak coffer-shim/1 on stdin and stdout)
"""
import hashlib
import hmac
import json
import sys

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

MAGIC = b"\x89COFFER\n"  # §3.1
FOOTER_MAGIC = b"\x89COFFEND"  # §4
CHUNK = 16384  # §5
SEALED = CHUNK + 16
MAX_WINDOW = 1 << 24  # §8


class Refused(Exception):
    """A refusal with its class (spec/errors.md)."""

    def __init__(self, error_class):
        super().__init__(error_class)
        self.error_class = error_class


# ---------------------------------------------------------------------------------------
# Keys (§2, §3.3, §5)

def hkdf_sha256(k, info):
    return HKDF(hashes.SHA256(), 32, bytes(32), info).derive(k)


def key_id(k, salt):
    """§3.3: HMAC-SHA256(id_key, salt)[0..16]."""
    return hmac.new(hkdf_sha256(k, b"coffer/v1 key id"), salt, hashlib.sha256).digest()[:16]


def chunk_keys(k, salt, context):
    """§5: C2SP chunked encryption's key schedule: (AES key, base nonce, commitment)."""
    info = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00" + salt + context
    okm = HKDFExpand(hashes.SHA512(), 76, info).derive(hkdf_sha256(k, b"coffer/v1 file key"))
    return okm[:32], okm[32:44], okm[44:]


def header_check(context, salt, commitment):
    """§3.4: the unkeyed checksum over everything before the first chunk."""
    return hashlib.sha256(b"coffer/v1 header check" + context + salt + commitment).digest()[:8]


def nonce(base_nonce, index):
    """§5: the chunk counter XORed into the last 8 bytes of the base nonce."""
    tail = int.from_bytes(base_nonce[4:], "big") ^ index
    return base_nonce[:4] + tail.to_bytes(8, "big")


def open_chunk(aead, base_nonce, index, sealed):
    """The chunk's plaintext if `sealed` authenticates as chunk `index`, else None."""
    try:
        return aead.decrypt(nonce(base_nonce, index), sealed, None)
    except InvalidTag:
        return None


def footer(length):
    return FOOTER_MAGIC + length.to_bytes(8, "big")


# ---------------------------------------------------------------------------------------
# Reading: format.md §7, one function per step

def step1_fixed_part(data):
    if len(data) < 16:
        whole = not data or MAGIC.startswith(data) or data.startswith(MAGIC)
        raise Refused("truncated" if whole else "malformed")
    if data[:8] != MAGIC:
        raise Refused("malformed")


def step2_version_and_length(data):
    if data[8] != 1:
        raise Refused("unsupported")
    header_len = int.from_bytes(data[12:16], "big")
    if not 40 <= header_len <= 65536:
        raise Refused("malformed")
    return header_len


def step3_rest_of_header(data, header_len):
    if len(data) < header_len + 56:
        raise Refused("truncated")
    return (data[:header_len - 8], data[header_len - 8:header_len],
            data[header_len:header_len + 24], data[header_len + 24:header_len + 56])


def step4_header_check(context, check, salt, commitment):
    if header_check(context, salt, commitment) != check:
        raise Refused("corrupt")


def step5_fixed_fields(context):
    suite, compression, flags = context[9], context[10], context[11]
    if suite != 1 or compression not in (0, 1, 2) or flags != 0:
        raise Refused("unsupported")


DEFINED = {0x01: 1, 0x02: 2, 0x81: 1}  # §3.2: tag -> type


def step5_metadata(metadata):
    """§3.2, each entry checked in the spec's order; returns the content kind."""
    pos, previous, content = 0, -1, 0
    while pos < len(metadata):
        tag, kind = metadata[pos], metadata[pos + 1] if pos + 1 < len(metadata) else None
        length = int.from_bytes(metadata[pos + 2:pos + 4], "big")
        value = metadata[pos + 4:pos + 4 + length]
        if pos + 4 > len(metadata) or len(value) != length or tag <= previous:
            raise Refused("malformed")
        if kind not in (1, 2, 3) or (kind == 1 and length != 8) or not utf8_if_text(kind, value):
            raise Refused("malformed")
        if tag & 0x80 and tag not in DEFINED:
            raise Refused("unsupported")
        if tag in DEFINED and kind != DEFINED[tag]:
            raise Refused("malformed")
        if tag == 0x81:
            content = int.from_bytes(value, "big")
            if content not in (0, 1):
                raise Refused("unsupported")
        pos, previous = pos + 4 + length, tag
    return content


def utf8_if_text(kind, value):
    if kind != 2:
        return True
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def step6_key_id(k, context, salt):
    if not hmac.compare_digest(key_id(k, salt), context[16:32]):
        raise Refused("wrong_key")


def step7_commitment(derived, commitment):
    if not hmac.compare_digest(derived, commitment):
        raise Refused("corrupt")


def step8_full_chunk(aead, base_nonce, index, block):
    """A block of 16400 bytes that authenticates as chunk `index`: its plaintext, or None."""
    return open_chunk(aead, base_nonce, index, block) if len(block) == SEALED else None


def final_prefix(aead, base_nonce, index, candidate):
    """The length (16..16399) of a prefix of `candidate` that is final chunk `index`."""
    for length in range(16, min(len(candidate), SEALED - 1) + 1):
        if open_chunk(aead, base_nonce, index, candidate[:length]) is not None:
            return length
    return None


def step9_1_whole_tail(aead, base_nonce, index, tail, file_length):
    """The tail without its last 16 bytes is the final chunk: the footer must state L."""
    if not 16 <= len(tail) - 16 <= SEALED - 1:
        return None
    plain = open_chunk(aead, base_nonce, index, tail[:-16])
    if plain is not None and tail[-16:] != footer(file_length):
        raise Refused("corrupt")
    return plain


def step9_2_final_then_more(aead, base_nonce, index, tail, file_length):
    """A final chunk followed by less than its footer: the file was cut inside the footer
    (the right footer states the whole file's length, p + f + 16) or has bytes after it."""
    length = final_prefix(aead, base_nonce, index, tail)
    if length is not None:
        rest = tail[length:]
        whole = file_length - len(tail) + length + 16
        cut_footer = len(rest) < 16 and footer(whole).startswith(rest)
        raise Refused("truncated" if cut_footer else "trailing_data")


def step9_3_footer_decides(tail):
    """The footer is present (corrupt) if the last 16 bytes begin with its magic."""
    present = len(tail) >= 16 and tail[-16:-8] == FOOTER_MAGIC
    raise Refused("corrupt" if present else "truncated")


def step9_middle(aead, base_nonce, index, block):
    found = final_prefix(aead, base_nonce, index, block) is not None
    raise Refused("trailing_data" if found else "corrupt")


def read_body(aead, base_nonce, data, start):
    """Steps 8 and 9: the payload, released only once every chunk and the footer hold."""
    payload, pos, index = bytearray(), start, 0
    while True:
        block = data[pos:pos + SEALED]
        plain = step8_full_chunk(aead, base_nonce, index, block)
        if plain is not None:
            payload += plain
            pos, index = pos + SEALED, index + 1
            continue
        tail = data[pos:]
        if len(tail) > SEALED + 16:
            step9_middle(aead, base_nonce, index, block)
        plain = step9_1_whole_tail(aead, base_nonce, index, tail, len(data))
        if plain is not None:
            return bytes(payload + plain)
        step9_2_final_then_more(aead, base_nonce, index, tail, len(data))
        step9_3_footer_decides(tail)


def zstd_magic(payload):
    """§8: an ordinary frame's magic (libraries also take a skippable frame or no bytes)."""
    if payload[:4] != b"\x28\xb5\x2f\xfd":
        raise Refused("corrupt")


def zstd_window(payload):
    """§8: a window of at most 2^24 bytes."""
    try:
        window = zstandard.get_frame_parameters(payload).window_size
    except zstandard.ZstdError as e:
        raise Refused("corrupt") from e
    if window > MAX_WINDOW:
        raise Refused("corrupt")


def zstd_one_frame(payload):
    """§8: the frame decodes, and nothing follows it."""
    inflater = zstandard.ZstdDecompressor().decompressobj()
    try:
        plaintext = inflater.decompress(payload)
    except zstandard.ZstdError as e:
        raise Refused("corrupt") from e
    if not inflater.eof or inflater.unused_data:
        raise Refused("corrupt")
    return plaintext


def zstd_frame(payload):
    """§8: exactly one ordinary Zstandard frame with a window of at most 2^24 bytes."""
    zstd_magic(payload)
    zstd_window(payload)
    return zstd_one_frame(payload)


def zstd_seekable_frames(payload):
    """§8.2: ordinary frames, each decoded on its own under §8.1's window rule, up to the
    first byte that does not start one. Returns [(compressed, plaintext)], the plaintext
    and where the frames end."""
    pos, frames, out = 0, [], bytearray()
    while payload[pos:pos + 4] == b"\x28\xb5\x2f\xfd":
        zstd_window(payload[pos:])
        inflater = zstandard.ZstdDecompressor().decompressobj()
        try:
            plain = inflater.decompress(payload[pos:])
        except zstandard.ZstdError as e:
            raise Refused("corrupt") from e
        if not inflater.eof:
            raise Refused("corrupt")
        end = len(payload) - len(inflater.unused_data)
        frames.append((end - pos, len(plain)))
        out += plain
        pos = end
    return frames, bytes(out), pos


def zstd_seek_table(frames, table):
    """§8.2: the table lists exactly the frames, nothing follows it, and the frames keep
    the size rule (S, a multiple of 16384 up to 2^24, for all but the last)."""
    n = len(frames)
    entries = b"".join(c.to_bytes(4, "little") + d.to_bytes(4, "little") for c, d in frames)
    expected = (b"\x5e\x2a\x4d\x18" + (8 * n + 9).to_bytes(4, "little") + entries
                + n.to_bytes(4, "little") + b"\x00\xb1\xea\x92\x8f")
    if n == 0 or table != expected:
        raise Refused("corrupt")
    sizes = [d for _, d in frames]
    s = sizes[0]
    if s > MAX_WINDOW or (n > 1 and (s == 0 or s % CHUNK or any(d != s for d in sizes[:-1])
                                     or not 1 <= sizes[-1] <= s)):
        raise Refused("corrupt")


def zstd_seekable(payload):
    """§8.2: frames, then the seek table."""
    frames, plaintext, end = zstd_seekable_frames(payload)
    zstd_seek_table(frames, payload[end:])
    return plaintext


def read(data, k):
    """format.md §7 in order; the plaintext, or Refused with the first failure's class."""
    step1_fixed_part(data)
    header_len = step2_version_and_length(data)
    context, check, salt, commitment = step3_rest_of_header(data, header_len)
    step4_header_check(context, check, salt, commitment)
    step5_fixed_fields(context)
    step5_metadata(context[32:])
    step6_key_id(k, context, salt)
    aead_key, base_nonce, derived = chunk_keys(k, salt, context)
    step7_commitment(derived, commitment)
    payload = read_body(AESGCM(aead_key), base_nonce, data, header_len + 56)
    if context[10] == 2:
        return zstd_seekable(payload)
    return zstd_frame(payload) if context[10] == 1 else payload


# ---------------------------------------------------------------------------------------
# Writing (§3-§5): the runner gives the salt and the header; the check is recomputed

def write(k, salt, header, payload):
    context = header[:-8]
    aead_key, base_nonce, commitment = chunk_keys(k, salt, context)
    aead = AESGCM(aead_key)
    out = bytearray(context + header_check(context, salt, commitment) + salt + commitment)
    for index in range(len(payload) // CHUNK + 1):
        out += aead.encrypt(nonce(base_nonce, index), payload[index * CHUNK:][:CHUNK], None)
    return bytes(out + footer(len(out) + 16))


# ---------------------------------------------------------------------------------------
# The shim protocol (conformance.md §7)

def answer(request):
    op, fmt = request.get("op"), request.get("format")
    k = bytes.fromhex(request["key"])
    if (op, fmt) == ("decrypt", "coffer"):
        return {"plaintext": read(bytes.fromhex(request["file"]), k).hex()}
    if (op, fmt) == ("encrypt", "coffer"):
        file = write(k, bytes.fromhex(request["salt"]), bytes.fromhex(request["header"]),
                     bytes.fromhex(request["payload"]))
        return {"file": file.hex()}
    return None


def serve():
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "hello":
            reply = {"type": "hello", "protocol": "coffer-shim/1", "name": "coffer-python-model", "version": "1",
                     "capabilities": {"decrypt": ["coffer"], "encrypt": ["coffer"],
                                      "vault_client": False, "realms_client": False}}
        else:
            reply = {"type": "response", "id": message["id"]}
            try:
                result = answer(message)
                reply.update({"ok": True, **result} if result is not None
                             else {"ok": False, "unimplemented": True})
            except Refused as refusal:
                reply.update({"ok": False, "error": refusal.error_class})
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve()
