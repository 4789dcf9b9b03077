#!/usr/bin/env python3
"""A small vault client written from spec/vault.md alone, in a second language, serving the
shim protocol (spec/conformance.md §7) with `vault_client` only, to measure the client-vault
suite's bite: the model passes every case, and each of its mutants (one step of the client's
procedure skipped or inverted, `--mutant NAME`) must fail at least one
(conformance/tests/mutants.rs, conformance/MUTANTS.md).

OPAQUE comes from the clean-room reader vectors/tools/vault_check.py (its client half); HTTP
from the standard library (the runner's vault is plain HTTP on loopback).

Usage: vault_client_model.py [--mutant NAME]   (serves the shim protocol on stdin/stdout)
       vault_client_model.py --list            (the mutants, one JSON object a line)
"""
import base64
import hmac
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../../../vectors/tools"))
import vault_check as opaque  # noqa: E402
from realms_check import RandomDraws, parse_ksf  # noqa: E402

# (name, step of the spec, what the mutant does)
MUTANTS = [
    ("plain-http-anywhere", "§9.1 (1)", "connects over plain HTTP to any host"),
    ("ksf-ceiling-unchecked", "§2", "starts Argon2id whatever memory the vault names"),
    ("ksf-floor-unchecked", "§2", "accepts Argon2id below the floor"),
    ("pin-unchecked", "§9.1 (2)", "never compares the vault's key with the pinned one"),
    ("register-pin-after-upload", "§9.1 (2)", "compares the pinned key only after uploading"),
    ("ke2-length-unchecked", "§3.2 step 3", "calls a KE2 of the wrong length wrong_password"),
    ("server-mac-unchecked", "§3.2 step 3", "never checks KE2's server MAC"),
    ("ke3-after-bad-ke2", "§3.2 step 3", "sends KE3 even when KE2 does not verify"),
    ("envelope-any-version", "§3.4", "opens an envelope sealed for another version of the record"),
    ("envelope-sealed-for-version-0", "§3.1 step 3", "seals K for version 0, not 1"),
    ("error-classes-from-status", "§10", "takes the class from the HTTP status, not the body"),
    ("locked-as-wrong-password", "§8", "calls a locked record wrong_password"),
    ("refusals-as-io", "§8", "calls every refusal of the vault io"),
]
MUTANT = None
CEILING_KIB = 1024 * 1024          # spec §2: m above 1 GiB is refused unless raised by name
FLOOR_KIB, FLOOR_PASSES = 19456, 2  # spec §2's floor


def mutant(name):
    assert any(m[0] == name for m in MUTANTS), name
    return MUTANT == name


class Refused(Exception):
    def __init__(self, cls, detail=""):
        super().__init__(detail)
        self.cls, self.detail = cls, detail


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise Refused("malformed", "not base64url") from e


STATUS_CLASS = {400: "malformed", 401: "wrong_password", 403: "unauthorized", 404: "no_record",
                422: "unsupported", 423: "locked", 429: "rate_limited"}


class Vault:
    """The vault's HTTP API (spec §10) for one request's url, token and user."""

    def __init__(self, request):
        self.url, self.token = request["url"].rstrip("/"), request["token"]
        self.check_url()

    def check_url(self):
        """spec §9.1 (1): plain HTTP only to loopback, refused before connecting."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https" or mutant("plain-http-anywhere"):
            return
        host = parts.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if parts.scheme != "http" or not loopback:
            raise Refused("unsupported", f"plain http:// to {host}, which is not loopback")

    def post(self, path, body):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as e:
            raise refusal(e.code, e.read()) from None
        except (OSError, ValueError) as e:
            raise Refused("io", str(e)) from None


def refusal(status, raw):
    """spec §10: clients branch on the body's `error`, never on the status alone."""
    try:
        cls = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        cls = "io"
    if mutant("error-classes-from-status"):
        cls = STATUS_CLASS.get(status, "io")
    if mutant("refusals-as-io"):
        cls = "io"
    if mutant("locked-as-wrong-password") and cls == "locked":
        cls = "wrong_password"
    return Refused(cls, f"the vault answered {status}")


def check_ksf(text):
    """spec §2: parse, then refuse more memory than the ceiling and less than the floor."""
    try:
        m, t, _ = parse_ksf(text)
    except ValueError as e:
        raise Refused("unsupported", str(e)) from e
    if m > CEILING_KIB:
        if not mutant("ksf-ceiling-unchecked"):
            raise Refused("unsupported", f"m = {m} KiB is over the 1 GiB ceiling")
        # What the unchecked client meets: it cannot hold that much.
        raise Refused("io", "out of memory")
    if (m < FLOOR_KIB or t < FLOOR_PASSES) and not mutant("ksf-floor-unchecked"):
        raise Refused("unsupported", f"{text} is below the floor")


def check_pin(request, server_pk):
    """spec §9.1 (2): the pinned key, when given, must be the vault's."""
    pinned = request.get("server_key")
    if pinned and not mutant("pin-unchecked"):
        if not hmac.compare_digest(bytes.fromhex(pinned), server_pk):
            raise Refused("server_auth_failed", "the vault's key is not the pinned one")


def recover(request):
    """spec §3.2: K, hex."""
    vault = Vault(request)
    opaque.SERVER_ID = request["server_id"].encode()
    user, password = request["user"].encode(), request["password"].encode()
    login = opaque.ClientLogin(password, RandomDraws())
    path = f"/v1/users/{urllib.parse.quote(request['user'], safe='')}"
    start = vault.post(f"{path}/recover/start", {"ke1": b64(login.ke1)})
    session_id, ke2, ksf = unb64(start["session_id"]), unb64(start["ke2"]), start["ksf"]
    try:
        check_ksf(ksf)
        if len(ke2) != 320:
            raise Refused("wrong_password" if mutant("ke2-length-unchecked") else "malformed",
                          "KE2 length")
        try:
            ke3, session_key, export_key = finish_login(login, ke2, user, ksf)
        except opaque.VaultError as e:
            raise Refused(e.error_class, str(e)) from e
        if request.get("server_key"):
            check_pin(request, server_key_of(login, ke2, ksf))
    except Refused:
        if mutant("ke3-after-bad-ke2"):
            try:
                vault.post(f"/v1/sessions/{b64(session_id)}/finish", {"ke3": b64(bytes(64))})
            except Refused:
                pass
        raise
    finish = vault.post(f"/v1/sessions/{b64(session_id)}/finish", {"ke3": b64(ke3)})
    release = unb64(finish["release"])
    try:
        return open_release(session_key, session_id, export_key, release).hex()
    except opaque.VaultError as e:
        raise Refused(e.error_class, str(e)) from e


def finish_login(login, ke2, user, ksf):
    """RFC 9807's client finish; the server-MAC mutant sends the KE3 whatever the MAC."""
    if not mutant("server-mac-unchecked"):
        return login.finish(ke2, user, ksf)
    # The finish's second comparison is the server MAC's: the mutant lets it pass.
    original = opaque.hmac.compare_digest
    calls = []

    def lenient(a, b):
        calls.append(1)
        return True if len(calls) == 2 else original(a, b)
    opaque.hmac.compare_digest = lenient
    try:
        return login.finish(ke2, user, ksf)
    finally:
        opaque.hmac.compare_digest = original


def server_key_of(login, ke2, ksf):
    """The server public key inside KE2's masked response (checked after the envelope)."""
    evaluated = opaque.received_evaluation(ke2[:32], login.ke1[:32])
    rwd = opaque.randomized_password(login.password, login.r, evaluated, ksf)
    masking_key = opaque.expand(rwd, b"MaskingKey", opaque.NH)
    pad = opaque.expand(masking_key, ke2[32:64] + b"CredentialResponsePad",
                        opaque.NPK + opaque.ENVELOPE_LEN)
    return opaque.xor(pad, ke2[64:192])[:32]


def open_release(session_key, session_id, export_key, release):
    """spec §3.2 step 5: the release, then the envelope."""
    if not mutant("envelope-any-version"):
        return opaque.open_release(session_key, session_id, export_key, release)[2]
    key = opaque.hkdf_sha512(session_key, b"coffer/v1 vault transport key")
    plain = opaque.aead_open(key, release, b"coffer/v1 transport" + session_id)
    record_id, envelope = plain[:16], plain[20:]
    for version in range(1, 5):
        try:
            return opaque.open_envelope(export_key, record_id, version, envelope)
        except opaque.VaultError:
            continue
    raise opaque.VaultError("server_auth_failed", "envelope")


def register(request):
    """spec §3.1."""
    vault = Vault(request)
    opaque.SERVER_ID = request["server_id"].encode()
    user, password = request["user"].encode(), request["password"].encode()
    root_key = bytes.fromhex(request["key"])
    draws = RandomDraws()
    r, blinded = opaque.client_registration_start(password, draws)
    path = f"/v1/users/{urllib.parse.quote(request['user'], safe='')}"
    start = vault.post(f"{path}/register/start", {"request": b64(blinded)})
    record_id, response, ksf = unb64(start["record_id"]), unb64(start["response"]), start["ksf"]
    check_ksf(ksf)
    if not mutant("register-pin-after-upload"):
        check_pin(request, response[32:])
    try:
        upload, export_key = opaque.client_registration_finish(password, r, blinded, response,
                                                               user, ksf, draws)
    except opaque.VaultError as e:
        raise Refused(e.error_class, str(e)) from e
    version = 0 if mutant("envelope-sealed-for-version-0") else 1
    envelope = opaque.seal_envelope(export_key, record_id, version, root_key, os.urandom(12))
    body = {"record_id": b64(record_id), "upload": b64(upload), "envelope": b64(envelope)}
    if request.get("limit") is not None:
        body["limit"] = request["limit"]
    vault.post(f"{path}/register/finish", body)
    if mutant("register-pin-after-upload"):
        check_pin(request, response[32:])
    return {}


def serve():
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "hello":
            reply = {"type": "hello", "protocol": "coffer-shim/1",
                     "name": "coffer-vault-client-model", "version": "1",
                     "capabilities": {"decrypt": [], "encrypt": [], "vault_client": True,
                                      "realms_client": False}}
        else:
            reply = {"type": "response", "id": message["id"]}
            try:
                if message.get("op") == "vault_recover":
                    reply.update({"ok": True, "key": recover(message)})
                elif message.get("op") == "vault_register":
                    reply.update({"ok": True, **register(message)})
                else:
                    reply.update({"ok": False, "unimplemented": True})
            except Refused as r:
                reply.update({"ok": False, "error": r.cls, "detail": r.detail})
            except (KeyError, ValueError) as e:
                reply.update({"ok": False, "error": "malformed", "detail": str(e)})
        print(json.dumps(reply), flush=True)


def main(argv):
    global MUTANT
    if argv[:1] == ["--list"]:
        for name, step, what in MUTANTS:
            print(json.dumps({"name": name, "step": step, "what": what}))
        return 0
    if "--mutant" in argv:
        MUTANT = argv[argv.index("--mutant") + 1]
        assert any(m[0] == MUTANT for m in MUTANTS), f"no mutant {MUTANT}"
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
