#!/usr/bin/env python3
"""An independent reader of Coffer's vector files: it re-checks every case of the files named
on the command line using only the YAML, the specs' text and PyPI's `cryptography`, with no
Rust code, to show the files alone are enough to implement against.

Usage: check_vectors.py vectors/keys.yaml vectors/kdf.yaml ...
realms.yaml is read by realms_check.py beside this file (ristretto255, the threshold OPRF),
vault.yaml by vault_check.py (OPAQUE transcripts and the record state machine),
hsm.yaml by hsm_check.py (its token checks need PyKCS11 and COFFER_VECTORS_PKCS11_MODULE).
Exit status: 0 when every case holds, 1 otherwise.
Needs: pyyaml, cryptography (pip install pyyaml cryptography).
"""
import hashlib
import hmac
import sys
import zlib

import yaml
import hsm_check
import realms_check
import vault_check
from cryptography.hazmat.primitives import hashes
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

JAVA_HEADER = bytes.fromhex("aced00057572000" "25b42acf317f8060854e002000078" "70")


class KeyTextError(Exception):
    """spec/key.md §2.2: a bad character (with position) or a wrong digit count."""

    def __init__(self, position=None, digits=None):
        super().__init__(position, digits)
        self.position, self.digits = position, digits


def parse_digits(text):
    """spec/key.md §2.2."""
    nibbles = []
    for position, char in enumerate(text, start=1):
        if char in " -":
            continue
        if char in "0123456789abcdefABCDEF":
            nibbles.append(char)
            continue
        raise KeyTextError(position=position)
    if len(nibbles) != 64:
        raise KeyTextError(digits=len(nibbles))
    return bytes.fromhex("".join(nibbles))


def read_key_file(data):
    """spec/key.md §3.4: returns (form, fields) or raises ValueError (malformed)."""
    if data.startswith(JAVA_HEADER[:4]):
        if not data.startswith(JAVA_HEADER) or len(data) < 27:
            raise ValueError("not a byte[]")
        n = int.from_bytes(data[23:27], "big")
        body = data[27:]
        if len(body) != n:
            raise ValueError("length")
        if n == 32:
            return "encrypted_backup_key", {"key": body.hex()}
        if n == 131:
            return "legacy", {
                "aes_key": body[99:131].hex(),
                "server_salt": body[3:35].hex(),
                "google_id_salt": body[35:51].hex(),
            }
        raise ValueError("array length")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError("not UTF-8") from e
    try:
        return "text", {"key": parse_digits(text.strip("\n\r ")).hex()}
    except KeyTextError as e:
        raise ValueError("text") from e


def data_bytes(value):
    """A `Data` field: hex, or {repeat: HEX, length: N}."""
    if isinstance(value, dict):
        pattern = bytes.fromhex(value["repeat"])
        n = value["length"]
        return (pattern * (n // len(pattern) + 1))[:n]
    return bytes.fromhex(value)


def hkdf_sha256(ikm, salt, info, length):
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def short(value):
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + f"... ({len(text)} characters)"


class Checker:
    def __init__(self):
        self.failures = []
        self.cases = 0
        self.valid_coffer = {}
        self.not_checked = []

    def fail(self, case, what):
        self.failures.append(f"{case['id']}: {what}")

    def expect(self, case, field, actual):
        if case.get(field) != actual:
            self.fail(case, f"{field}: expected {short(case.get(field))}, got {short(actual)}")

    def outcome(self, case, error_class):
        """Checks an invalid case's class; returns True when the case is valid and succeeded."""
        self.cases += 1
        if case["result"] == "invalid":
            if error_class is None:
                self.fail(case, "invalid, but accepted")
            elif case.get("error") != error_class:
                self.fail(case, f"expected {case.get('error')}, got {error_class}")
            return False
        if error_class is not None:
            if case["result"] == "valid":
                self.fail(case, f"valid, but rejected as {error_class}")
            return False
        return True

    def each_case(self, group, check):
        """Runs `check(case)` (a list of problems) on every case of a group."""
        for case in group["cases"]:
            self.cases += 1
            for problem in check(case):
                self.fail(case, problem)

    # realms.yaml (spec/realms.md), through realms_check.py
    def realms_hash(self, group):
        self.each_case(group, realms_check.check_hash)

    def realms_transcript(self, group):
        self.each_case(group, realms_check.check_transcript)

    def realms_guess_counts(self, group):
        self.each_case(group, lambda case: realms_check.check_guess_counts(group["parameters"], case))

    # vault.yaml (spec/vault.md), through vault_check.py
    def vault_transcript(self, group):
        self.each_case(group, vault_check.check_transcript)

    def vault_state_machine(self, group):
        self.each_case(group, lambda case: vault_check.check_script(group["parameters"], case))

    # keys.yaml
    def sixty_four_digits(self, group):
        for case in group["cases"]:
            try:
                key, error = parse_digits(case["text"]), None
            except KeyTextError as e:
                key, error = None, e
            if self.outcome(case, None if error is None else "malformed"):
                self.expect(case, "key", key.hex())
            elif error is not None:
                if error.position is not None:
                    self.expect(case, "position", error.position)
                else:
                    self.expect(case, "digits", error.digits)

    def key_file(self, group):
        for case in group["cases"]:
            try:
                form, fields = read_key_file(data_bytes(case["file"]))
                error = None
            except ValueError:
                form, fields, error = None, {}, "malformed"
            if self.outcome(case, error):
                self.expect(case, "form", form)
                for field, value in fields.items():
                    self.expect(case, field, value)

    # crypt15.yaml
    def header(self, group):
        for case in group["cases"]:
            try:
                fields_, error = read_header(bytes.fromhex(case["header"])), None
            except Refused as e:
                fields_, error = None, e.error_class
            if self.outcome(case, error):
                for field, value in fields_.items():
                    if value is not None or case.get(field) is not None:
                        self.expect(case, field, value)

    def file(self, group):
        for case in group["cases"]:
            data = data_bytes(case["file"])
            try:
                out, error = backup_decrypt(data, bytes.fromhex(case["key"]), "KeyFile" in case["flags"]), None
            except Refused as e:
                out, error = None, e.error_class
            if self.outcome(case, error) and out != data_bytes(case["plaintext"]):
                self.fail(case, f"plaintext: {len(out)} bytes differ from the {len(data_bytes(case['plaintext']))} expected")
            # Encryption from the exact payload.
            header = bytes.fromhex(case["header"])
            iv = bytes.fromhex(read_header(header)["iv"])
            file_key = hkdf_sha256(bytes.fromhex(case["key"]), bytes(32), b"backup encryption", 32)
            made = header + AESGCM(file_key).encrypt(iv, data_bytes(case["payload"]), None)
            if case["md5"]:
                made += hashlib.md5(made).digest()
            if made != data:
                self.fail(case, "encrypting the payload does not give the file")

    def invalid_file(self, group):
        for case in group["cases"]:
            try:
                backup_decrypt(data_bytes(case["file"]), bytes.fromhex(case["key"]), "KeyFile" in case["flags"])
                error = None
            except Refused as e:
                error = e.error_class
            self.outcome(case, error)

    def legacy_file(self, group):
        """crypt14 and crypt12 files (§9, §10)."""
        for case in group["cases"]:
            data = data_bytes(case["file"])
            try:
                if read_header(data)["format"] != case["format"]:
                    self.fail(case, f"not a {case['format']} file")
                out = backup_decrypt(data, bytes.fromhex(case["key"]), "KeyFile" in case["flags"])
                error = None
            except Refused as e:
                out, error = None, e.error_class
            if self.outcome(case, error) and out != data_bytes(case["plaintext"]):
                self.fail(case, "plaintext differs")

    # format.yaml
    def coffer_file(self, group):
        self.valid_coffer = {}
        for case in group["cases"]:
            k, data = bytes.fromhex(case["key"]), data_bytes(case["file"])
            try:
                payload, info = coffer_read(data, k)
                error = None
            except Refused as e:
                payload, info, error = None, None, e.error_class
            if self.outcome(case, error):
                # The released bytes are the payload; a zstd payload is not inflated here
                # (the Python standard library has no zstd): it is compared as the frame.
                if payload != data_bytes(case["payload"]):
                    self.fail(case, "the decrypted payload differs")
                if case["compression"] == "none":
                    if payload != data_bytes(case["plaintext"]):
                        self.fail(case, "plaintext differs")
                elif case["compression"] == "zstd":
                    if zstd_frame_problem(payload):
                        self.fail(case, "the payload is not one valid Zstandard frame")
                    self.not_checked.append(f"{case['id']}: zstd plaintext (the payload frame was checked)")
                else:
                    if seekable_problem(payload, len(data_bytes(case["plaintext"]))):
                        self.fail(case, "the payload is not valid seekable frames")
                    self.not_checked.append(f"{case['id']}: zstd plaintext (the frames and table were checked)")
                self.expect(case, "compression", info["compression"])
                self.expect(case, "metadata", info["metadata"])
            header = bytes.fromhex(case["header"])
            if coffer_assemble(k, bytes.fromhex(case["salt"]), header[:-8], data_bytes(case["payload"])) != data:
                self.fail(case, "encrypting the payload does not give the file")
            self.valid_coffer[case["id"]] = (data, data_bytes(case["plaintext"]))

    def invalid_coffer_file(self, group):
        for case in group["cases"]:
            if "base" in case:
                if case["base"] not in self.valid_coffer:
                    self.fail(case, f"no base case {case['base']}")
                    self.cases += 1
                    continue
                base, plaintext = self.valid_coffer[case["base"]]
                data = apply_edits(base, case.get("edits", []))
            else:
                data, plaintext = data_bytes(case["file"]), data_bytes(case.get("plaintext", ""))
            try:
                payload, info = coffer_read(data, bytes.fromhex(case["key"]))
                error, released = None, None
                if info["compression"] == "zstd":
                    error = zstd_frame_problem(payload)
                elif info["compression"] == "zstd_seekable":
                    error = seekable_problem(payload)
            except Refused as e:
                error, released = e.error_class, e.released
            self.outcome(case, error)
            if released is not None and (len(released) > case["released"] or not plaintext.startswith(released)):
                self.fail(case, f"released {len(released)} bytes, more than {case['released']}")

    # kdf.yaml
    def hkdf_sha256(self, group):
        salt = bytes.fromhex(group["salt"])
        for case in group["cases"]:
            self.outcome(case, None)
            okm = hkdf_sha256(bytes.fromhex(case["ikm"]), salt, case["info"].encode(), group["length"])
            self.expect(case, "okm", okm.hex())

    def vault_keys(self, group):
        for case in group["cases"]:
            self.outcome(case, None)
            okm = HKDF(hashes.SHA512(), 32, None, case["info"].encode()).derive(bytes.fromhex(case["ikm"]))
            self.expect(case, "okm", okm.hex())

    def key_id(self, group):
        for case in group["cases"]:
            self.outcome(case, None)
            id_key = hkdf_sha256(bytes.fromhex(case["root_key"]), bytes(32), b"coffer/v1 key id", 32)
            self.expect(case, "id_key", id_key.hex())
            key_id = hmac.new(id_key, bytes.fromhex(case["salt"]), hashlib.sha256).digest()[:16]
            self.expect(case, "key_id", key_id.hex())

    def chunked_encryption_keys(self, group):
        for case in group["cases"]:
            self.outcome(case, None)
            keys = chunk_keys(bytes.fromhex(case["input_key"]), bytes.fromhex(case["salt"]), bytes.fromhex(case["context"]))
            self.expect(case, "aead_key", keys[0].hex())
            self.expect(case, "base_nonce", keys[1].hex())
            self.expect(case, "commitment", keys[2].hex())


# crypt15.yaml (spec/crypt15.md)

class Refused(Exception):
    """A reader's refusal with its error class."""

    def __init__(self, error_class):
        super().__init__(error_class)
        self.error_class = error_class
        self.released = b""


PLAINTEXT_MAGICS = [b"SQLite format 3\0", b"PK\x03\x04", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"]


def varint(buf, pos, limit=10):
    """A protobuf varint at buf[pos:] (§7.1): (value, next position)."""
    value = 0
    for i in range(limit):
        if pos + i >= len(buf):
            raise Refused("malformed")
        byte = buf[pos + i]
        if i == 9 and byte > 1:
            raise Refused("malformed")
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise Refused("malformed")


def fields(buf):
    """The (number, wire type, value) of a message (§7.1); value is an int or bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > (1 << 29) - 1 or wire in (3, 4, 6, 7):
            raise Refused("malformed")
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise Refused("malformed")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            size, pos = varint(buf, pos)
            if pos + size > len(buf):
                raise Refused("malformed")
            value, pos = buf[pos:pos + size], pos + size
        yield number, wire, value


STRING_META = {1, 2, 3, 43, 44}
INT_META = {4, 38, 42} | set(range(5, 38)) | {39}
BYTES_META = {40, 41}


def check_metadata(block):
    seen, app_version = set(), None
    for number, wire, value in fields(block):
        if number in seen:
            raise Refused("malformed")
        seen.add(number)
        if number in STRING_META or number in BYTES_META:
            if wire != 2:
                raise Refused("malformed")
            if number in STRING_META:
                try:
                    text = value.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise Refused("malformed") from e
                if number == 1:
                    app_version = text
        elif number in INT_META and wire != 0:
            raise Refused("malformed")
    return app_version


def check_c14(block):
    seen = {}
    for number, wire, value in fields(block):
        if number in (1, 2, 3, 4, 5):
            if wire != 2 or number in seen:
                raise Refused("malformed")
            seen[number] = value
    if len(seen.get(3, b"")) != 32 or len(seen.get(4, b"")) != 16:
        raise Refused("malformed")
    return seen.get(5)


def header_lead(data):
    """§5 steps 1-3: refuse an empty input and plaintext files."""
    lead = data[:16]
    if not lead:
        raise Refused("truncated")
    if any(lead.startswith(m) for m in PLAINTEXT_MAGICS):
        raise Refused("malformed")
    return lead


def crypt12_header(data):
    """§5 step 4, §10: the fixed 67-byte crypt12 header."""
    if len(data) >= 2 and data[:2] != b"\x00\x01":
        raise Refused("malformed")
    if len(data) < 67:
        raise Refused("truncated")
    return {
        "format": "crypt12", "header_length": 67, "iv": data[51:67].hex(), "key_type": None,
        "key_type_new": None, "app_version": None, "stray_byte": None,
    }


MAX_LENGTH_BYTES = 3  # §6.1
MAX_PREFIX = 16384  # §6.1


def header_length(data):
    """§6.1: the varint N (at most 3 bytes, N <= 16384) and the bytes it took."""
    n, pos = 0, 0
    for i in range(MAX_LENGTH_BYTES + 1):
        if i == MAX_LENGTH_BYTES:  # the last byte allowed had its high bit set
            raise Refused("malformed")
        if i >= len(data):
            raise Refused("truncated")
        n |= (data[i] & 0x7F) << (7 * i)
        pos = i + 1
        if not data[i] & 0x80:
            break
    if n > MAX_PREFIX:
        raise Refused("malformed")
    return n, pos


def stray_byte(data, pos):
    """§6.2: a 01 after a one-byte length is skipped."""
    return pos == 1 and len(data) > 1 and data[1] == 1


def header_end(data, h, lead):
    """§6.3: the header may not end inside the lead of a longer file, nor after the input."""
    if h < len(lead):
        raise Refused("malformed")
    if len(data) < h:
        raise Refused("truncated")


def check_key_type(value, seen):
    """§7.2 fields 1 and 6: value >= 5 is unsupported, a second occurrence malformed."""
    if value >= 5:
        raise Refused("unsupported")
    if seen is not None:
        raise Refused("malformed")
    return value


def prefix_pass_1(prefix):
    """§7.2 pass 1: every field in file order; the cipher blocks for pass 2."""
    key_type = key_type_new = app_version = None
    blocks, seen_meta = [], False
    for number, wire, value in fields(prefix):
        if number in (1, 6):
            if wire != 0:
                raise Refused("malformed")
            if number == 1:
                key_type = check_key_type(value, key_type)
            else:
                key_type_new = check_key_type(value, key_type_new)
        elif number == 2:
            if wire != 2 or any(kind == "crypt14" for kind, _ in blocks):
                raise Refused("malformed")
            blocks.append(("crypt14", check_c14(value)))
        elif number == 3:
            if wire != 2:
                raise Refused("malformed")
            blocks.append(("crypt15", value))
        elif number == 4:
            if seen_meta or wire != 2:
                raise Refused("malformed")
            seen_meta = True
            app_version = check_metadata(value)
        elif number == 5 and wire != 2:
            raise Refused("malformed")
    return key_type, key_type_new, app_version, blocks


def c15_iv(block):
    """§7.5: field 1, REQUIRED, at most once, length-delimited."""
    found = [(wire, v) for number, wire, v in fields(block) if number == 1]
    if len(found) != 1 or found[0][0] != 2:
        raise Refused("malformed")
    return found[0][1]


def prefix_pass_2(blocks):
    """§7.2 pass 2: exactly one cipher block, whose IV is 16 bytes: (format, IV)."""
    ivs = []
    for kind, block in blocks:
        if kind == "crypt15":
            ivs.append((kind, c15_iv(block)))
        else:
            if block is None:
                raise Refused("malformed")
            ivs.append((kind, block))
    if len(ivs) != 1:
        raise Refused("malformed")
    check_iv_length(ivs[0][1])
    return ivs[0]


def check_iv_length(iv):
    if len(iv) != 16:
        raise Refused("malformed")


def read_header(data):
    """§5-§7: the header's fields, or Refused."""
    lead = header_lead(data)
    if lead[0] == 0:
        return crypt12_header(data)
    n, pos = header_length(data)
    stray = stray_byte(data, pos)
    start = pos + (1 if stray else 0)
    h = start + n
    header_end(data, h, lead)
    key_type, key_type_new, app_version, blocks = prefix_pass_1(data[start:h])
    form, iv = prefix_pass_2(blocks)
    return {
        "format": form, "header_length": h, "iv": iv.hex(), "key_type": key_type,
        "key_type_new": key_type_new, "app_version": app_version, "stray_byte": stray,
    }


def gf_mult(x, y):
    """Multiplication in GCM's GF(2^128) (SP 800-38D §6.3), on 128-bit integers."""
    r = 0xE1 << 120
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ r if v & 1 else v >> 1
    return z


def aes_ecb(key, block):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def gcm_unauthenticated(key, iv, ciphertext):
    """GCM's CTR part with a 16-byte IV (§3: J0 = GHASH_H(IV ‖ 0^64 ‖ [128]_64)), no tag."""
    h = int.from_bytes(aes_ecb(key, bytes(16)), "big")
    j0 = 0
    for block in (iv, bytes(8) + (128).to_bytes(8, "big")):
        j0 = gf_mult(j0 ^ int.from_bytes(block, "big"), h)
    out = bytearray()
    for i in range(0, len(ciphertext), 16):
        counter = (j0 >> 32 << 32) | ((j0 + 1 + i // 16) & 0xFFFFFFFF)
        stream = aes_ecb(key, counter.to_bytes(16, "big"))
        out += bytes(a ^ b for a, b in zip(ciphertext[i:i + 16], stream))
    return bytes(out)


def payload_kind(p):
    """§12.1."""
    if not p:
        return "empty"
    if len(p) >= 2:
        cmf, flg = p[0], p[1]
        if cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf * 256 + flg) % 31 == 0:
            return "zlib"
    if p[:4] == b"PK\x03\x04":
        return "zip"
    return "unknown"


def inflate(p):
    """(output, bytes of p consumed when the stream ended, or None; invalid?)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(p)
    except zlib.error:
        return None, None, True
    if d.eof:
        return out, len(p) - len(d.unused_data), False
    return out, None, False


def classify(p, n, md5_matched, t=32):
    """§13."""
    if n < 16:
        return "truncated"
    kind = payload_kind(p)
    if md5_matched:
        return "corrupt" if kind in ("zlib", "zip") else "wrong_key"
    if kind == "zlib":
        _, e, invalid = inflate(p)
        if invalid:
            return "corrupt"
        if e is None:
            return "truncated"
        return "trailing_data" if n > e + t else "truncated" if n < e + t else "corrupt"
    if kind == "zip":
        return "corrupt" if p[-22:][:4] == b"PK\x05\x06" else "truncated"
    return "truncated" if len(p) < 4 else "corrupt"


def backup_decrypt(data, key_bytes, key_is_file):
    """§4-§13 for crypt15, crypt14 and crypt12: the plaintext, or Refused."""
    header = read_header(data)
    if header["format"] == "crypt15":
        if key_is_file:
            key_bytes = root_key_of_file(key_bytes)
        aes_key = hkdf_sha256(key_bytes, bytes(32), b"backup encryption", 32)
    else:
        aes_key = legacy_aes_key(data, header, key_bytes, key_is_file)
    return decrypt_body(data, header, aes_key)


def decrypt_body(data, header, aes_key):
    """§11-§13: the trailer decision, GCM, the checks after authentication, the classes."""
    h, iv = header["header_length"], bytes.fromhex(header["iv"])
    b = data[h:]
    crypt12 = header["format"] == "crypt12"
    n, t = len(b), 36 if crypt12 else 32
    md5_end = n - 4 if crypt12 else n  # crypt12's 4-byte footer follows the MD5 (§10)
    gcm = AESGCM(aes_key)
    if n >= t and hashlib.md5(data[:h] + b[:md5_end - 16]).digest() == b[md5_end - 16:md5_end]:
        ciphertext, tag, layout_a = b[:n - t], b[n - t:n - t + 16], True
    elif n >= 16 and not crypt12:  # crypt12 has no layout B
        ciphertext, tag, layout_a = b[:n - 16], b[n - 16:], False
    else:
        raise Refused(classify(gcm_unauthenticated(aes_key, iv, b[:max(0, n - t)]), n, False, t))
    try:
        payload = gcm.decrypt(iv, ciphertext + tag, None)
    except InvalidTag:
        raise Refused(classify(gcm_unauthenticated(aes_key, iv, ciphertext), n, layout_a, t)) from None
    return authentic_payload(payload, layout_a)


def legacy_aes_key(data, header, key_bytes, key_is_file):
    """§4, §9.2: a crypt14/12 file's AES key: the 32 bytes given, used directly, or a `key`
    file's, once its salts match the header's (else `wrong_key`)."""
    if not key_is_file:
        return key_bytes
    form, fields_ = read_key_file(key_bytes)
    if form != "legacy":
        return bytes.fromhex(fields_["key"])
    server, google = header_salts(data, header)
    if server.hex() != fields_["server_salt"] or google.hex() != fields_["google_id_salt"]:
        raise Refused("wrong_key")
    return bytes.fromhex(fields_["aes_key"])


def header_salts(data, header):
    """The server and Google id salts of a crypt12 header (§10) or crypt14 block (§7.4)."""
    if header["format"] == "crypt12":
        return data[3:35], data[35:51]
    n, pos = header_length(data)
    start = pos + (1 if stray_byte(data, pos) else 0)
    for number, _, block in fields(data[start:start + n]):
        if number == 2:
            inner = {k: v for k, _, v in fields(block)}
            return inner[3], inner[4]
    raise Refused("malformed")


def root_key_of_file(key_file):
    """§4: K from a key file; a crypt12/14 `key` file opens no crypt15 file (`wrong_key`)."""
    form, fields_ = read_key_file(key_file)
    if form == "legacy":
        raise Refused("wrong_key")
    return bytes.fromhex(fields_["key"])


def authentic_payload(payload, layout_a):
    """§12.3: an authenticated zlib payload needs its MD5 (else `truncated`) and must be one
    whole zlib stream (else `corrupt`); it is inflated."""
    if payload_kind(payload) != "zlib":
        return payload
    if not layout_a:
        raise Refused("truncated")
    out, e, invalid = inflate(payload)
    if invalid or e != len(payload):
        raise Refused("corrupt")
    return out


# format.yaml (spec/format.md)

COFFER_MAGIC = b"\x89COFFER\n"
FOOTER_MAGIC = b"\x89COFFEND"
CHUNK = 16384
SEALED = CHUNK + 16


def chunk_nonce(base_nonce, index):
    tail = int.from_bytes(base_nonce[4:], "big") ^ index
    return base_nonce[:4] + tail.to_bytes(8, "big")


def open_chunk(gcm, base_nonce, index, sealed):
    try:
        return gcm.decrypt(chunk_nonce(base_nonce, index), sealed, None)
    except InvalidTag:
        return None


def parse_metadata(meta):
    """§3.2: the metadata map as format.yaml writes it, or Refused."""
    out, pos, previous = {}, 0, -1
    while pos < len(meta):
        if pos + 4 > len(meta):
            raise Refused("malformed")
        tag, kind, length = meta[pos], meta[pos + 1], int.from_bytes(meta[pos + 2:pos + 4], "big")
        value = meta[pos + 4:pos + 4 + length]
        if len(value) != length:
            raise Refused("malformed")
        pos += 4 + length
        if tag <= previous:
            raise Refused("malformed")
        previous = tag
        if kind not in (1, 2, 3) or (kind == 1 and length != 8):
            raise Refused("malformed")
        if kind == 2:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Refused("malformed") from e
        defined = {0x01: 1, 0x02: 2, 0x81: 1}
        if tag & 0x80 and tag not in defined:
            raise Refused("unsupported")
        if tag in defined and kind != defined[tag]:
            raise Refused("malformed")
        if tag == 0x81 and int.from_bytes(value, "big") not in (0, 1):
            raise Refused("unsupported")
        if tag == 0x01:
            out["created"] = str(int.from_bytes(value, "big"))
        elif tag == 0x02:
            out["generator"] = value.decode("utf-8")
        elif tag == 0x81:
            out["content"] = "tar" if int.from_bytes(value, "big") == 1 else "file"
        else:
            out[f"tag_{tag:02x}"] = value.hex()
    return out


def coffer_read(data, k):
    """§7, streaming: (released payload, header info); Refused carries .released."""
    released = bytearray()

    def refuse(error_class):
        error = Refused(error_class)
        error.released = bytes(released)
        return error

    if len(data) < 16:
        if not data or COFFER_MAGIC.startswith(data) or data.startswith(COFFER_MAGIC):
            raise refuse("truncated")
        raise refuse("malformed")
    if data[:8] != COFFER_MAGIC:
        raise refuse("malformed")
    if data[8] != 1:
        raise refuse("unsupported")
    header_len = int.from_bytes(data[12:16], "big")
    if not 40 <= header_len <= 65536:
        raise refuse("malformed")
    if len(data) < header_len + 56:
        raise refuse("truncated")
    context, check = data[:header_len - 8], data[header_len - 8:header_len]
    salt, commitment = data[header_len:header_len + 24], data[header_len + 24:header_len + 56]
    if hashlib.sha256(b"coffer/v1 header check" + context + salt + commitment).digest()[:8] != check:
        raise refuse("corrupt")
    if data[9] != 1 or data[10] not in (0, 1, 2) or data[11] != 0:
        raise refuse("unsupported")
    metadata = parse_metadata(context[32:])
    id_key = hkdf_sha256(k, bytes(32), b"coffer/v1 key id", 32)
    if not hmac.compare_digest(hmac.new(id_key, salt, hashlib.sha256).digest()[:16], context[16:32]):
        raise refuse("wrong_key")
    aead_key, base_nonce, derived = chunk_keys(hkdf_sha256(k, bytes(32), b"coffer/v1 file key", 32), salt, context)
    if not hmac.compare_digest(derived, commitment):
        raise refuse("corrupt")
    gcm = AESGCM(aead_key)
    footer = FOOTER_MAGIC + len(data).to_bytes(8, "big")
    pos, index = header_len + 56, 0
    info = {"compression": ["none", "zstd", "zstd_seekable"][data[10]], "metadata": metadata}
    while True:
        block = data[pos:pos + SEALED]
        if len(block) == SEALED:
            plain = open_chunk(gcm, base_nonce, index, block)
            if plain is not None:
                released += plain
                pos, index = pos + SEALED, index + 1
                continue
        tail = data[pos:]

        def final_prefix(candidate):
            for length in range(16, min(len(candidate), SEALED - 1) + 1):
                if open_chunk(gcm, base_nonce, index, candidate[:length]) is not None:
                    return length
            return None

        if len(tail) <= SEALED + 16:
            if 16 <= len(tail) - 16 <= SEALED - 1:
                plain = open_chunk(gcm, base_nonce, index, tail[:-16])
                if plain is not None:
                    if tail[-16:] != footer:
                        raise refuse("corrupt")
                    released += plain
                    return bytes(released), info
            length = final_prefix(tail)
            if length is not None:
                whole = FOOTER_MAGIC + (pos + length + 16).to_bytes(8, "big")  # the right footer
                cut = len(tail) - length < 16 and whole.startswith(tail[length:])
                raise refuse("truncated" if cut else "trailing_data")
            footer_present = len(tail) >= 16 and tail[-16:-8] == FOOTER_MAGIC  # §7 step 9.3
            raise refuse("corrupt" if footer_present else "truncated")
        raise refuse("trailing_data" if final_prefix(block) is not None else "corrupt")


def zstd_frame_problem(payload):
    """§8.1 without decompressing: the payload must be exactly one ordinary Zstandard frame
    (RFC 8878 §3.1.1) with a window of at most 2^24 bytes. Returns "corrupt" or None. The
    block structure is walked by its headers; a compressed block's content is not decoded."""
    end, _ = zstd_frame_end(payload, 0)
    return None if end == len(payload) else "corrupt"


def seekable_problem(payload, plaintext_len=None):
    """§8.2 without decompressing: frames walked by their headers, then the seek table,
    which must list exactly their lengths; plaintext lengths are checked against each
    frame's content size (the reference writer always records it) and the size rule.
    Returns "corrupt" or None."""
    p, pos, seen = payload, 0, []
    while pos + 4 <= len(p) and p[pos:pos + 4] == b"\x28\xb5\x2f\xfd":
        end, content = zstd_frame_end(p, pos)
        if end is None or content is None:
            return "corrupt"
        seen.append((end - pos, content))
        pos = end
    n = len(seen)
    table = p[pos:]
    if n == 0 or len(table) != 8 * n + 17 or table[:4] != b"\x5e\x2a\x4d\x18":
        return "corrupt"
    if int.from_bytes(table[4:8], "little") != 8 * n + 9 or table[-9:] != n.to_bytes(4, "little") + b"\x00\xb1\xea\x92\x8f":
        return "corrupt"
    listed = [(int.from_bytes(table[8 + 8 * i:12 + 8 * i], "little"), int.from_bytes(table[12 + 8 * i:16 + 8 * i], "little")) for i in range(n)]
    if listed != seen:
        return "corrupt"
    sizes = [d for _, d in seen]
    s = sizes[0]
    if n > 1 and (s == 0 or s % CHUNK or s > 1 << 24 or any(d != s for d in sizes[:-1]) or not 1 <= sizes[-1] <= s):
        return "corrupt"
    if n == 1 and s > 1 << 24:
        return "corrupt"
    if plaintext_len is not None and sum(sizes) != plaintext_len:
        return "corrupt"
    return None


def zstd_frame_end(payload, start):
    """Walks one ordinary frame from `start`: returns (end, content size or None), or
    (None, None) if it is not a frame within the payload or breaks the window limit."""
    p = payload
    if len(p) < start + 6 or p[start:start + 4] != b"\x28\xb5\x2f\xfd":
        return None, None
    p = p[start:]
    fhd, pos = p[4], 5
    single_segment, checksum, dict_flag, fcs_flag = (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3, fhd >> 6
    if not single_segment:
        exponent, mantissa = p[pos] >> 3, p[pos] & 7
        base = 1 << (10 + exponent)
        if base + (base >> 3) * mantissa > 1 << 24:
            return None, None
        pos += 1
    pos += [0, 1, 2, 4][dict_flag]
    fcs_size = [1 if single_segment else 0, 2, 4, 8][fcs_flag]
    content_size = None
    if fcs_size:
        content_size = int.from_bytes(p[pos:pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    if single_segment and content_size > 1 << 24:  # no window descriptor: the window is the content size
        return None, None
    pos += fcs_size
    while True:
        if pos + 3 > len(p):
            return None, None
        header = int.from_bytes(p[pos:pos + 3], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            return None, None
        pos += 3 + (1 if kind == 1 else size)
        if pos > len(p):
            return None, None
        if last:
            break
    pos += 4 if checksum else 0
    return start + pos, content_size


def coffer_assemble(k, salt, context, payload):
    """header ‖ C2SP(salt, context, payload) ‖ footer (§3-§5)."""
    aead_key, base_nonce, commitment = chunk_keys(hkdf_sha256(k, bytes(32), b"coffer/v1 file key", 32), salt, context)
    gcm = AESGCM(aead_key)
    body = bytearray(salt + commitment)
    full = len(payload) // CHUNK
    for index in range(full + 1):
        body += gcm.encrypt(chunk_nonce(base_nonce, index), payload[index * CHUNK:(index + 1) * CHUNK], None)
    check = hashlib.sha256(b"coffer/v1 header check" + context + salt + commitment).digest()[:8]
    out = context + check + bytes(body)
    return out + FOOTER_MAGIC + (len(out) + 16).to_bytes(8, "big")


def apply_edits(data, edits):
    out = bytearray(data)
    for edit in edits:
        if "truncate_to" in edit:
            del out[edit["truncate_to"]:]
        elif "flip_byte" in edit:
            out[edit["flip_byte"]] ^= 1
        elif "append" in edit:
            out += bytes.fromhex(edit["append"])
        elif "swap" in edit:
            a, b, n = edit["swap"]
            out[a:a + n], out[b:b + n] = out[b:b + n], out[a:a + n]
    return bytes(out)


def chunk_keys(input_key, salt, context):
    """c2sp.org/chunked-encryption key schedule for AEAD_AES_256_GCM (spec/format.md §5)."""
    info = b"c2sp.org/chunked-encryption@v1+" + b"AEAD_AES_256_GCM" + b"\x00" + salt + context
    okm = HKDFExpand(hashes.SHA512(), 76, info).derive(input_key)
    return okm[:32], okm[32:44], okm[44:]


REALMS_GROUP_TYPES = {"hash", "transcript", "guess_counts"}
VAULT_GROUP_TYPES = {"transcript", "state_machine"}
# Topics whose group types are handled by the methods named "<topic>_<type>".
TOPIC_GROUP_TYPES = {"realms": REALMS_GROUP_TYPES, "vault": VAULT_GROUP_TYPES}

GROUP_TYPES = {
    "sixty_four_digits", "key_file", "hkdf_sha256", "key_id", "vault_keys", "chunked_encryption_keys",
    "header", "file", "invalid_file", "legacy_file", "coffer_file", "invalid_coffer_file",
}


def main(paths):
    checker = Checker()
    token = None  # the PKCS#11 token of hsm.yaml's checks, opened on first use
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if doc.get("schema") != "coffer-vectors/1":
            checker.failures.append(f"{path}: unknown schema {doc.get('schema')!r}")
            continue
        before = checker.cases
        for group in doc["groups"]:
            if doc.get("topic") == "hsm":
                if token is None:
                    token = hsm_check.open_token() or False
                hsm_check.check(checker, group, token or None)
                continue
            topic = doc.get("topic")
            if topic in TOPIC_GROUP_TYPES:
                known = group["type"] in TOPIC_GROUP_TYPES[topic]
                handler = getattr(checker, topic + "_" + group["type"], None) if known else None
            else:
                handler = getattr(checker, group["type"], None) if group["type"] in GROUP_TYPES else None
            if handler is None:
                checker.failures.append(f"{path}: no checker for group type {group['type']!r}")
                continue
            handler(group)
        counted = checker.cases - before
        if counted != doc["number_of_cases"]:
            checker.failures.append(f"{path}: checked {counted} cases, the file says {doc['number_of_cases']}")
        print(f"{path}: {counted} cases")
    for skipped in checker.not_checked:
        print(f"not checked here: {skipped}")
    for failure in checker.failures:
        print(f"FAIL {failure}")
    print(f"{checker.cases} cases, {len(checker.failures)} failures")
    return 0 if not checker.failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
