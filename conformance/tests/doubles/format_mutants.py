#!/usr/bin/env python3
"""Mutants of the model adapter (conformance/adapters/coffer_python.py): each breaks one
checking step of spec/format.md §7 or §8, by skipping it or by swapping the classes it
chooses between, and then serves the shim protocol like the model. The conformance tests run
the client-format suite against every mutant and require each to fail at least one case (no
mutant survives); the table of which cases kill which mutant is conformance/MUTANTS.md.

Usage: format_mutants.py --list          (the mutants as JSON lines: name, step, what)
       format_mutants.py MUTANT          (serve the shim protocol as that mutant)
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "adapters"))
import coffer_python as model  # noqa: E402

Refused = model.Refused


def skip(*_args):
    """A check that never refuses."""
    return None


def swapped(function, a, b):
    """`function` with the classes `a` and `b` exchanged in its refusals."""
    def mutant(*args):
        try:
            return function(*args)
        except Refused as refusal:
            swap = {a: b, b: a}.get(refusal.error_class)
            raise Refused(swap or refusal.error_class) from None
    return mutant


def fixed_fields_without(field):
    """Step 5's fixed-field checks with one of them left out."""
    def mutant(context):
        checks = {"suite": context[9] != 1, "compression": context[10] not in (0, 1, 2),
                  "flags": context[11] != 0}
        if any(failed for name, failed in checks.items() if name != field):
            raise Refused("unsupported")
    return mutant


def metadata_ignoring(rule):
    """Step 5's metadata check that lets one rule of §3.2 pass."""
    original = model.step5_metadata

    def mutant(metadata):
        try:
            return original(metadata)
        except Refused as refusal:
            if rule(metadata):
                return 0
            raise refusal
    return mutant


def tags_decrease(metadata):
    pos, tags = 0, []
    while pos + 4 <= len(metadata):
        tags.append(metadata[pos])
        pos += 4 + int.from_bytes(metadata[pos + 2:pos + 4], "big")
    return any(b <= a for a, b in zip(tags, tags[1:]))


def any_index(aead, base_nonce, index, block):
    """Step 8 that accepts a chunk sealed under any nearby counter: order is not bound."""
    if len(block) != model.SEALED:
        return None
    for other in range(max(0, index - 2), index + 3):
        plain = model.open_chunk(aead, base_nonce, other, block)
        if plain is not None:
            return plain
    return None


def zstd_ignoring_trailing(payload):
    """§8 that takes the first frame and ignores what follows it."""
    try:
        return model.zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    except model.zstandard.ZstdError as e:
        raise Refused("corrupt") from e


def unchecked_magic(data):
    """Step 1 that still needs 16 bytes but takes any first 8 as the magic."""
    if len(data) < 16:
        ORIGINAL["step1_fixed_part"](data)


def unchecked_footer(aead, base_nonce, index, tail, length):
    """Step 9.1 that releases the final chunk whatever its last 16 bytes state."""
    return ORIGINAL["step9_1_whole_tail"](aead, base_nonce, index,
                                          tail[:-16] + model.footer(length), length)


def any_header_length(data):
    """Step 2 without the bounds on header_len."""
    if data[8] != 1:
        raise Refused("unsupported")
    return int.from_bytes(data[12:16], "big")


ORIGINAL = {name: getattr(model, name) for name in ("step1_fixed_part", "step9_1_whole_tail")}

# name -> (the spec's step, what the mutant does, the model attribute, its replacement)
def seek_table_without_size_rule(frames, table):
    """§8.2's table check with the frame-size rule left out (frames of any lengths)."""
    n = len(frames)
    entries = b"".join(c.to_bytes(4, "little") + d.to_bytes(4, "little") for c, d in frames)
    if n == 0 or table != (b"\x5e\x2a\x4d\x18" + (8 * n + 9).to_bytes(4, "little") + entries
                           + n.to_bytes(4, "little") + b"\x00\xb1\xea\x92\x8f"):
        raise Refused("corrupt")


MUTANTS = {
    "magic-unchecked": ("§7 step 1", "accepts any first 8 bytes as the magic",
                        "step1_fixed_part", unchecked_magic),
    "short-input-malformed": ("§7 step 1", "calls every input under 16 bytes malformed",
                              "step1_fixed_part", swapped(model.step1_fixed_part,
                                                          "truncated", "malformed")),
    "version-unchecked": ("§7 step 2", "reads any version as version 1",
                          "step2_version_and_length",
                          lambda data: int.from_bytes(data[12:16], "big")),
    "header-length-unchecked": ("§7 step 2", "accepts a header_len outside 40..=65536",
                                "step2_version_and_length", any_header_length),
    "short-header-corrupt": ("§7 step 3", "calls a header cut short corrupt, not truncated",
                             "step3_rest_of_header", swapped(model.step3_rest_of_header,
                                                             "truncated", "corrupt")),
    "header-check-skipped": ("§7 step 4", "never compares the header check",
                             "step4_header_check", skip),
    "suite-unchecked": ("§7 step 5", "accepts any suite", "step5_fixed_fields",
                        fixed_fields_without("suite")),
    "compression-unchecked": ("§7 step 5", "accepts any compression", "step5_fixed_fields",
                              fixed_fields_without("compression")),
    "flags-unchecked": ("§7 step 5", "accepts any flags", "step5_fixed_fields",
                        fixed_fields_without("flags")),
    "metadata-unchecked": ("§7 step 5", "never checks the metadata (§3.2)", "step5_metadata",
                           skip),
    "metadata-order-unchecked": ("§7 step 5", "accepts tags that do not increase",
                                 "step5_metadata", metadata_ignoring(tags_decrease)),
    "metadata-classes-swapped": ("§7 step 5", "says unsupported where §3.2 says malformed, "
                                 "and the reverse", "step5_metadata",
                                 swapped(model.step5_metadata, "malformed", "unsupported")),
    "key-id-skipped": ("§7 step 6", "never compares the key id", "step6_key_id", skip),
    "commitment-skipped": ("§7 step 7", "never compares the key commitment",
                           "step7_commitment", skip),
    "chunk-order-unbound": ("§7 step 8", "accepts a full chunk sealed under a nearby counter",
                            "step8_full_chunk", any_index),
    "footer-unchecked": ("§7 step 9.1", "releases the final chunk whatever the footer states",
                         "step9_1_whole_tail", unchecked_footer),
    "cut-footer-vs-appended-swapped": ("§7 step 9.2", "swaps truncated and trailing_data",
                                       "step9_2_final_then_more",
                                       swapped(model.step9_2_final_then_more,
                                               "truncated", "trailing_data")),
    "footer-decides-inverted": ("§7 step 9.3", "swaps truncated and corrupt",
                                "step9_3_footer_decides",
                                swapped(model.step9_3_footer_decides, "truncated", "corrupt")),
    "middle-block-inverted": ("§7 step 9 (a block in the middle)",
                              "swaps trailing_data and corrupt", "step9_middle",
                              swapped(model.step9_middle, "trailing_data", "corrupt")),
    "zstd-magic-unchecked": ("§8", "lets the zstd library judge what a frame is",
                             "zstd_magic", skip),
    "zstd-window-unbounded": ("§8", "accepts any window", "zstd_window", skip),
    "zstd-trailing-ignored": ("§8", "ignores bytes after the frame", "zstd_one_frame",
                              zstd_ignoring_trailing),
    "seek-table-unchecked": ("§8.2", "decodes the frames and never reads the seek table",
                             "zstd_seek_table", skip),
    "seek-table-sizes-unchecked": ("§8.2", "checks the table's entries but not the size rule",
                                   "zstd_seek_table", seek_table_without_size_rule),
}


def main():
    if sys.argv[1:] == ["--list"]:
        for name, (step, what, _, _) in MUTANTS.items():
            print(json.dumps({"name": name, "step": step, "what": what}))
        return
    _, _, attribute, replacement = MUTANTS[sys.argv[1]]
    setattr(model, attribute, replacement)
    model.serve()


if __name__ == "__main__":
    main()
