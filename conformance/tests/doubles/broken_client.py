#!/usr/bin/env python3
"""A deliberately broken client adapter for the conformance tests: it forwards every request
to the reference adapter and then misbehaves as MODE says.

  ignore-tag    accepts what the reference refuses as corrupt (a client that ignores tags)
  crash-once    exits when it sees the request named by CRASH_ON, once (restarted, it works)
  huge-line     answers the request named by CRASH_ON with a line of 64 MiB + 16 bytes, once
                (the runner's line limit; restarted, it works)
  crypt15-only  declares only crypt15 decryption
  output-before-auth  on a refused decryption, also returns the 16 bytes it "wrote" before
                the check failed (a streaming decryptor that writes before authenticating)
  bad-output    after a successful decrypt_file, flips one byte of the output file (for the
                bench: a tool whose output is wrong must not be timed as a success)
  ke3-anyway    after a failed vault recovery, sends a KE3 to the vault all the same (a
                client that does not stop when KE2 does not verify)
  no-pin        drops the server_key of vault requests (a client that never pins the vault's
                key)
  names-nobody  answers realms requests without naming any realm (a client that hides which
                realm failed)
  record        misbehaves in nothing: appends every line it receives and every line it
                answers, as JSON {"from": "runner"|"adapter", "line": ...}, to RECORD_FILE
                (for the shim schemas' test)
  unlock-anyway after a failed realms recovery, sends a phase-2 unlock to every realm all the
                same (a client that does not stop when the password check fails)

Usage: broken_client.py MODE REFERENCE_EXE [CRASH_ON]
"""
import json
import os
import subprocess
import sys
import urllib.request

mode, reference = sys.argv[1], sys.argv[2]
crash_on = sys.argv[3] if len(sys.argv) > 3 else None
marker = os.environ.get("CRASH_MARKER")
inner = subprocess.Popen([reference, "adapter"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
record = open(os.environ["RECORD_FILE"], "a") if mode == "record" else None


def recorded(origin, text):
    if record:
        record.write(json.dumps({"from": origin, "line": text.rstrip("\n")}) + "\n")
        record.flush()


# The runner's hello is answered by the reference's own.
first = sys.stdin.readline()
recorded("runner", first)
hello = json.loads(first)
inner.stdin.write(json.dumps(hello) + "\n")
inner.stdin.flush()
reply = inner.stdout.readline()
answer = json.loads(reply)
if mode == "crypt15-only":
    answer["capabilities"] = {"decrypt": ["crypt15"], "encrypt": [], "vault_client": False}
recorded("adapter", json.dumps(answer))
print(json.dumps(answer), flush=True)

for line in sys.stdin:
    recorded("runner", line)
    request = json.loads(line)
    if mode == "crash-once" and request.get("id") == crash_on and marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    if mode == "huge-line" and request.get("id") == crash_on and marker and not os.path.exists(marker):
        open(marker, "w").close()
        try:
            sys.stdout.write("x" * ((64 << 20) + 16) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        os._exit(3)
    if mode == "no-pin" and request.get("op", "").startswith("vault_"):
        request.pop("server_key", None)
        line = json.dumps(request) + "\n"
    inner.stdin.write(line)
    inner.stdin.flush()
    answer = json.loads(inner.stdout.readline())
    if mode == "ignore-tag" and answer.get("error") == "corrupt":
        answer = {"type": "response", "id": request["id"], "ok": True, "plaintext": ""}
    if mode == "output-before-auth" and request.get("op") == "decrypt" and answer.get("ok") is False:
        answer["plaintext"] = "00" * 16
    if mode == "ke3-anyway" and request.get("op") == "vault_recover" and answer.get("ok") is False:
        ke3 = json.dumps({"ke3": "A" * 86}).encode()
        post = urllib.request.Request(request["url"] + "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA/finish", data=ke3,
                                      headers={"content-type": "application/json",
                                               "authorization": "Bearer " + request["token"]})
        try:
            urllib.request.urlopen(post, timeout=10).read()
        except Exception:
            pass
    if mode == "names-nobody" and request.get("op", "").startswith("realms_"):
        answer["named"] = []
    if mode == "unlock-anyway" and request.get("op") == "realms_recover" and answer.get("ok") is False:
        for realm in request["realms"]:
            post = urllib.request.Request(realm["url"] + "/v1/realm/sessions/AAAAAAAAAAAAAAAAAAAAAA/unlock",
                                          data=json.dumps({"proof": "A" * 43}).encode(),
                                          headers={"content-type": "application/json",
                                                   "authorization": "Bearer " + realm["token"]})
            try:
                urllib.request.urlopen(post, timeout=10).read()
            except Exception:
                pass
    if mode == "bad-output" and request.get("op") == "decrypt_file" and answer.get("ok") is True:
        with open(request["output"], "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))
    recorded("adapter", json.dumps(answer))
    print(json.dumps(answer), flush=True)
