#!/usr/bin/env python3
"""Shim adapter (spec/conformance.md §7) for wa-crypt-tools from PyPI: crypt15 decryption
through its `wadecrypt` command. It declares only what the tool does that the suite can
check: decrypting crypt15 with a 64-digit key, and crypt14 and crypt12 with a `key` file. The tool reports no error classes, so every
refusal is sent as `corrupt`, and a file it writes is sent as accepted: the suite grades that
honestly (a wrong key that the tool accepts is a failure). For crypt14 and crypt12 it
decrypts every valid file, and writes output for every damaged one too (other salts, a
crypt12 cipher version it does not know, a cut or appended crypt12, a crypt14 with a flipped
tag): it checks no tag, salt or version. A crypt15 file with a key file, and a crypt14 or
crypt12 file with a bare AES key, are answered unimplemented.

For the bench (spec/conformance.md §11) it also declares `decrypt_file` and `encrypt_file`
for crypt15: `wadecrypt KEY IN OUT` and `waencrypt KEY IN OUT` (waencrypt is found beside
wadecrypt), run on the bench's files.

Usage: wa_crypt_tools.py WADECRYPT   (the path of the wadecrypt script)
"""
import json
import os
import subprocess
import sys
import tempfile

wadecrypt = sys.argv[1]


def decrypt(request):
    legacy = request["format"] in ("crypt14", "crypt12")
    # crypt15 takes the 64-digit key; crypt14 and crypt12 only a `key` file (the tool has no
    # way to be given a bare AES key).
    if ("key_file" in request) != legacy:
        return {"ok": False, "unimplemented": True}
    with tempfile.TemporaryDirectory() as tmp:
        encrypted = os.path.join(tmp, "backup." + request["format"])
        decrypted = os.path.join(tmp, "out")
        with open(encrypted, "wb") as f:
            f.write(bytes.fromhex(request["file"]))
        key = request.get("key")
        if legacy:
            key = os.path.join(tmp, "key")
            with open(key, "wb") as f:
                f.write(bytes.fromhex(request["key_file"]))
        run = subprocess.run([wadecrypt, key, encrypted, decrypted], capture_output=True, timeout=60)
        if run.returncode != 0 or not os.path.exists(decrypted):
            answer = {"ok": False, "error": "corrupt", "detail": run.stderr.decode(errors="replace")[-200:]}
            # What the tool wrote before failing is reported (spec/conformance.md §7).
            if os.path.exists(decrypted) and os.path.getsize(decrypted) > 0:
                with open(decrypted, "rb") as f:
                    answer["plaintext"] = f.read().hex()
            return answer
        with open(decrypted, "rb") as f:
            return {"ok": True, "plaintext": f.read().hex()}


def file_op(request, tool):
    run = subprocess.run([tool, request["key"], request["input"], request["output"]], capture_output=True)
    if run.returncode != 0 or not os.path.exists(request["output"]):
        return {"ok": False, "error": "corrupt", "detail": run.stderr.decode(errors="replace")[-200:]}
    return {"ok": True}


waencrypt = os.path.join(os.path.dirname(wadecrypt), "waencrypt")

for line in sys.stdin:
    request = json.loads(line)
    if request.get("type") == "hello":
        answer = {"type": "hello", "protocol": "coffer-shim/1", "name": "wa-crypt-tools (wadecrypt)", "version": "0.1.0",
                  "capabilities": {"decrypt": ["crypt15", "crypt14", "crypt12"], "encrypt": [],
                                   "decrypt_file": ["crypt15"],
                                   "encrypt_file": ["crypt15"], "vault_client": False}}
    else:
        if request.get("op") == "decrypt" and request.get("format") in ("crypt15", "crypt14", "crypt12"):
            answer = decrypt(request)
        elif request.get("op") == "decrypt_file" and request.get("format") == "crypt15":
            answer = file_op(request, wadecrypt)
        elif request.get("op") == "encrypt_file" and request.get("format") == "crypt15":
            answer = file_op(request, waencrypt)
        else:
            answer = {"ok": False, "unimplemented": True}
        answer.update({"type": "response", "id": request["id"]})
    print(json.dumps(answer), flush=True)
