#!/usr/bin/env python3
"""Mutants of the independent crypt15 reader (vectors/tools/check_vectors.py): each breaks one
step of spec/crypt15.md's reading procedure (§4-§13), by skipping a check or by swapping the
classes it chooses between; crypt15.yaml's cases (headers, files, invalid files) are then
checked with it. A mutant is killed when at least one case fails. The conformance tests
require that none survives and publish the table in conformance/MUTANTS.md.

Usage: crypt15_mutants.py VECTORS_DIR     (one JSON line per mutant: name, step, what, killers)
"""
import json
import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "vectors" / "tools"))
import check_vectors as reader  # noqa: E402

Refused = reader.Refused
ORIGINAL = {name: getattr(reader, name) for name in dir(reader)}


def swapped(name, a, b, when=lambda *args: True):
    """`name` with classes `a` and `b` exchanged, in its refusals and in what it returns,
    for the calls `when` selects."""
    function = ORIGINAL[name]

    def mutant(*args):
        swap = {a: b, b: a} if when(*args) else {}
        try:
            result = function(*args)
        except Refused as refusal:
            raise Refused(swap.get(refusal.error_class, refusal.error_class)) from None
        return swap.get(result, result) if isinstance(result, str) else result
    return mutant


def skipped(*_args):
    return None


def unbounded_length(data):
    """§6.1 without its limit on N."""
    saved = reader.MAX_PREFIX
    reader.MAX_PREFIX = 1 << 40
    try:
        return ORIGINAL["header_length"](data)
    finally:
        reader.MAX_PREFIX = saved


def four_byte_lengths(data):
    """§6.1 reading varints of up to 4 bytes."""
    saved = reader.MAX_LENGTH_BYTES
    reader.MAX_LENGTH_BYTES = 4
    try:
        return ORIGINAL["header_length"](data)
    finally:
        reader.MAX_LENGTH_BYTES = saved


def key_type_any(value, seen):
    """§7.2 fields 1 and 6 with any value."""
    if seen is not None:
        raise Refused("malformed")
    return value


def key_type_repeatable(value, _seen):
    """§7.2 fields 1 and 6 that may repeat."""
    if value >= 5:
        raise Refused("unsupported")
    return value


def first_block(blocks):
    """§7.2 pass 2 taking the first cipher block, however many there are."""
    return ORIGINAL["prefix_pass_2"](blocks[:1])


def c14_unchecked(block):
    """§7.4 without the salts' checks: the IV of field 5."""
    return {n: v for n, _, v in reader.fields(block)}.get(5)


def legacy_key_as_root(key_file):
    """§4 without the key-kind check: a crypt12/14 key file's AES key taken as K."""
    form, fields_ = reader.read_key_file(key_file)
    return bytes.fromhex(fields_["aes_key" if form == "legacy" else "key"])


def salts_unchecked(data, header, key_bytes, key_is_file):
    """§9.2 without the salt check: a `key` file's AES key whatever its salts."""
    if key_is_file and reader.read_key_file(key_bytes)[0] == "legacy":
        return bytes.fromhex(reader.read_key_file(key_bytes)[1]["aes_key"])
    return ORIGINAL["legacy_aes_key"](data, header, key_bytes, key_is_file)


def crypt12_any_version(data):
    """§10 without the cipher-version check."""
    return ORIGINAL["crypt12_header"](b"\x00\x01" + data[2:])


def zlib_without_md5(payload, _layout_a):
    """§12.3 that accepts a zlib payload without its MD5."""
    return ORIGINAL["authentic_payload"](payload, True)


def zlib_unchecked(payload, layout_a):
    """§12.3 that releases what inflates, a broken stream included."""
    if reader.payload_kind(payload) == "zlib" and layout_a:
        return reader.inflate(payload)[0]
    return ORIGINAL["authentic_payload"](payload, layout_a)


def kind_is(*kinds):
    return lambda p, n, md5, t=32: not md5 and n >= 16 and reader.payload_kind(p) in kinds


MUTANTS = {
    "plaintext-leads-unchecked": ("§5 step 3", "reads SQLite, ZIP and zlib files as headers",
                                  "PLAINTEXT_MAGICS", []),
    "empty-input-malformed": ("§5 step 2", "calls an empty input malformed",
                              "header_lead", swapped("header_lead", "truncated", "malformed")),
    "length-unbounded": ("§6.1", "accepts N above 16384", "header_length", unbounded_length),
    "length-4-bytes": ("§6.1", "reads a 4-byte varint", "header_length", four_byte_lengths),
    "stray-byte-kept": ("§6.2", "never skips the stray 01", "stray_byte", lambda *a: False),
    "header-end-unchecked": ("§6.3", "accepts a header ending in the lead or past the input",
                             "header_end", skipped),
    "key-type-any": ("§7.2", "accepts a KeyType of 5 or more", "check_key_type", key_type_any),
    "key-type-repeatable": ("§7.2", "accepts a KeyType field twice", "check_key_type",
                            key_type_repeatable),
    "metadata-unchecked": ("§7.6", "never checks the metadata block", "check_metadata",
                           lambda block: None),
    "c14-salts-unchecked": ("§7.4", "never checks the crypt14 block's salts", "check_c14",
                            c14_unchecked),
    "c15-iv-unchecked": ("§7.5", "takes any IV field, repeated or missing", "c15_iv",
                         lambda block: next((v for n, _, v in reader.fields(block) if n == 1),
                                            b"")),
    "one-block-of-many": ("§7.2 pass 2", "takes the first of several cipher blocks",
                          "prefix_pass_2", first_block),
    "iv-length-unchecked": ("§7.2 pass 2", "accepts an IV of any length", "check_iv_length",
                            skipped),
    "key-kind-unchecked": ("§4", "uses a crypt12/14 key file's AES key as K",
                           "root_key_of_file", legacy_key_as_root),
    "salt-check-skipped": ("§9.2", "decrypts with a `key` file whose salts differ",
                           "legacy_aes_key", salts_unchecked),
    "crypt12-version-unchecked": ("§10", "reads any crypt12 cipher version",
                                  "crypt12_header", crypt12_any_version),
    "zlib-without-md5": ("§12.3", "accepts a zlib payload without its MD5",
                         "authentic_payload", zlib_without_md5),
    "broken-zlib-released": ("§12.3", "releases an authenticated but broken zlib stream",
                             "authentic_payload", zlib_unchecked),
    "no-tag-room-corrupt": ("§13 step 1", "calls a body under 16 bytes corrupt", "classify",
                            swapped("classify", "truncated", "corrupt",
                                    lambda p, n, md5, t=32: n < 16)),
    "md5-matched-classes-swapped": ("§13 step 2", "swaps corrupt and wrong_key when the MD5 matched",
                                    "classify", swapped("classify", "corrupt", "wrong_key",
                                                        lambda p, n, md5, t=32: md5 and n >= 16)),
    "zlib-end-classes-swapped": ("§13 step 3 (zlib)", "swaps trailing_data and truncated",
                                 "classify", swapped("classify", "trailing_data", "truncated",
                                                     kind_is("zlib"))),
    "zlib-invalid-truncated": ("§13 step 3 (zlib)", "swaps corrupt and truncated",
                               "classify", swapped("classify", "corrupt", "truncated",
                                                   kind_is("zlib"))),
    "zip-eocd-inverted": ("§13 step 3 (zip)", "swaps corrupt and truncated", "classify",
                          swapped("classify", "corrupt", "truncated", kind_is("zip"))),
    "unknown-classes-swapped": ("§13 step 3 (other)", "swaps corrupt and truncated",
                                "classify", swapped("classify", "corrupt", "truncated",
                                                    kind_is("empty", "unknown"))),
}


def killers(vectors_dir):
    """The ids of crypt15.yaml's cases that fail under the current (mutated) reader."""
    doc = yaml.safe_load((pathlib.Path(vectors_dir) / "crypt15.yaml").read_text())
    checker = reader.Checker()
    failed = []
    checker.fail = lambda case, what: failed.append(case["id"])
    for group in doc["groups"]:
        check = {"header": checker.header, "file": checker.file,
                 "invalid_file": checker.invalid_file,
                 "legacy_file": checker.legacy_file}[group["type"]]
        try:
            check(group)
        except Exception as e:  # a crash in the mutant kills it too, on the case it was on
            failed.append(f"(crash: {type(e).__name__})")
    return sorted(set(failed))


def main():
    vectors_dir = sys.argv[1]
    if killers(vectors_dir):
        sys.exit("the unmutated reader fails crypt15.yaml")
    for name, (step, what, attribute, replacement) in MUTANTS.items():
        setattr(reader, attribute, replacement)
        try:
            found = killers(vectors_dir)
        finally:
            setattr(reader, attribute, ORIGINAL[attribute])
        print(json.dumps({"name": name, "step": step, "what": what, "killers": found}))


if __name__ == "__main__":
    main()
