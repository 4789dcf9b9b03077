#!/usr/bin/env python3
"""An independent reader of Coffer's vector files: it re-checks every case of the files named
on the command line using only the YAML, the specs' text and PyPI's `cryptography`, with no
Rust code, to show the files alone are enough to implement against.

Usage: check_vectors.py vectors/keys.yaml vectors/kdf.yaml ...
Exit status: 0 when every case holds, 1 otherwise.
Needs: pyyaml, cryptography (pip install pyyaml cryptography).
"""
import hashlib
import hmac
import sys

import yaml
from cryptography.hazmat.primitives import hashes
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


class Checker:
    def __init__(self):
        self.failures = []
        self.cases = 0

    def fail(self, case, what):
        self.failures.append(f"{case['id']}: {what}")

    def expect(self, case, field, actual):
        self.cases += 0
        if case.get(field) != actual:
            self.fail(case, f"{field}: expected {case.get(field)!r}, got {actual!r}")

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

    # kdf.yaml
    def hkdf_sha256(self, group):
        salt = bytes.fromhex(group["salt"])
        for case in group["cases"]:
            self.outcome(case, None)
            okm = hkdf_sha256(bytes.fromhex(case["ikm"]), salt, case["info"].encode(), group["length"])
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


def chunk_keys(input_key, salt, context):
    """c2sp.org/chunked-encryption key schedule for AEAD_AES_256_GCM (spec/format.md §5)."""
    info = b"c2sp.org/chunked-encryption@v1+" + b"AEAD_AES_256_GCM" + b"\x00" + salt + context
    okm = HKDFExpand(hashes.SHA512(), 76, info).derive(input_key)
    return okm[:32], okm[32:44], okm[44:]


def main(paths):
    checker = Checker()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if doc.get("schema") != "coffer-vectors/1":
            checker.failures.append(f"{path}: unknown schema {doc.get('schema')!r}")
            continue
        before = checker.cases
        for group in doc["groups"]:
            handler = getattr(checker, group["type"], None)
            if handler is None:
                checker.failures.append(f"{path}: no checker for group type {group['type']!r}")
                continue
            handler(group)
        counted = checker.cases - before
        if counted != doc["number_of_cases"]:
            checker.failures.append(f"{path}: checked {counted} cases, the file says {doc['number_of_cases']}")
        print(f"{path}: {counted} cases")
    for failure in checker.failures:
        print(f"FAIL {failure}")
    print(f"{checker.cases} cases, {len(checker.failures)} failures")
    return 0 if not checker.failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
