#!/usr/bin/env python3
"""A small vault server written from spec/vault.md and spec/openapi.yaml alone, in a second
language, to measure the vault-server suite's bite: the model passes every case, and each
of its mutants (one checking step of the spec skipped or inverted, `--mutant NAME`) must
fail at least one (conformance/tests/mutants.rs, conformance/MUTANTS.md).

OPAQUE comes from the clean-room reader vectors/tools/vault_check.py (its server half).
Records live in memory and, with `state_dir` in the config, in a JSON file there, written
(and fsynced) before each answer that depends on it; the model serves plain HTTP on loopback (which spec §9.1 allows on
loopback only). Left out, because no case of the suite reaches them and a stub would
pretend otherwise: the audit log (`/v1/audit` is answered as an unknown path), TLS, the
session caps and worker fairness of §9.1, the request timeout (408).

Usage: vault_model.py --config FILE [--mutant NAME]   (prints `listening URL`, then serves)
       vault_model.py --restart DIR     (SIGKILLs the model whose state_dir is DIR and starts
                                         it again on the same port; returns once it listens)
       vault_model.py --list                           (the mutants, one JSON object a line)

The config is JSON: {"server_id": ..., "ksf": ..., "session_lifetime": SECONDS, "tenants": {NAME: {"token": ...,
"admin_token": ... (optional), "user_keys": {KID: PUBLIC_KEY_HEX}}}, "state_dir": DIR}.
"""
import base64
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../../../vectors/tools"))
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

import vault_check as opaque  # noqa: E402
from realms_check import Draws, Malformed, RandomDraws, decode_element  # noqa: E402

# (name, step of the spec, what the mutant does)
MUTANTS = [
    ("token-unchecked", "§9", "serves a request without a known token as the first tenant"),
    ("no-www-authenticate", "§9", "refuses a missing token without WWW-Authenticate"),
    ("records-shared-by-tenants", "§9", "keys records by user alone, whatever the tenant"),
    ("sessions-unbound-to-tenant", "§3.2 step 4", "lets another tenant's KE3 use a session"),
    ("other-tenant-ends-session", "§3.2 step 4",
     "takes a session out before checking its tenant"),
    ("user-token-any-user", "§9.3", "lets a user token act for any user of its tenant"),
    ("user-token-signature-unchecked", "§9.3", "never verifies a user token's signature"),
    ("user-token-time-unchecked", "§9.3", "accepts an expired user token"),
    ("user-token-audience-unchecked", "§9.3", "accepts a user token for another server"),
    ("unknown-route-404", "§10", "answers an unknown path 404 and a wrong method 400"),
    ("unknown-fields-accepted", "§10", "ignores unknown JSON fields"),
    ("body-unbounded", "§10", "reads a body of any size"),
    ("user-id-unbounded", "§10", "accepts a user id of any length"),
    ("session-id-any-length", "§10", "looks up a session id of any length"),
    ("base64-lenient", "§10", "drops characters that are not base64url"),
    ("malformed-ke1-counted", "§3.2 step 2", "counts the guess before checking KE1's length"),
    ("invalid-element-counted", "§10", "counts the guess before decoding KE1's elements"),
    ("guess-counted-at-ke3", "§4.2", "counts a guess at a failed KE3, not at KE1"),
    ("no-destroy-at-failed-ke3", "§3.2 step 4", "leaves the record active after a failed last KE3"),
    ("one-guess-too-many", "§4.2", "destroys a record only past limit + 1 guesses"),
    ("one-guess-too-few", "§4.2", "destroys a record when one guess is left"),
    ("count-unlocked", "§4.3", "reads and writes the count in two steps (a race)"),
    ("success-keeps-count", "§3.2 step 4", "leaves the count as it is after a recovery"),
    ("fake-reply-404", "§5", "answers an unknown user no_record instead of a fake KE2"),
    ("fake-session-no-record", "§5", "answers a fake session's KE3 no_record"),
    ("session-reused", "§3.2 step 4", "keeps a session after its KE3"),
    ("version-unchecked", "§3.2 step 4", "releases at KE3 whatever changed since KE1"),
    ("register-over-active", "§3.1 step 2", "registers over an active record"),
    ("record-id-reused", "§3.1 step 4", "lets a registration take a record id in use"),
    ("limit-unbounded", "§3.1 step 4", "accepts any guess limit"),
    ("change-unverified", "§3.3", "changes the password in a session whose KE3 was not sent"),
    ("delete-with-tenant-token", "§3.3", "deletes without the password for the tenant token"),
    ("delete-unverified", "§3.3", "deletes in a session whose KE3 was not sent"),
    ("delete-session-reused", "§3.3", "keeps the verified session after a deletion"),
    ("status-counts-used", "§3.3", "reports guesses used as guesses left"),
    ("no-rate-limit", "§9", "never limits a user's KE1s"),
    ("no-tenant-limit", "§9", "never limits a tenant's requests"),
    ("tenant-limit-shared", "§9", "keeps one request bucket for all tenants"),
    ("rate-limit-without-retry-after", "§9", "answers 429 without Retry-After"),
    ("session-never-expires", "§3.2 step 2", "keeps sessions past their lifetime"),
    ("guess-not-saved", "§4.3", "keeps a counted guess in memory only (lost in a crash)"),
    ("stalled-connection-kept", "§9.1 (3)", "waits for a stalled connection's headers forever"),
]
MUTANT = None


def mutant(name):
    """Whether the running mutant is `name` (a name not in MUTANTS is a bug here)."""
    assert any(m[0] == name for m in MUTANTS), name
    return MUTANT == name


STATUS = {"malformed": 400, "wrong_password": 401, "no_record": 404, "unsupported": 422,
          "locked": 423, "rate_limited": 429, "io": 500}
HEADER_TIMEOUT = 5  # seconds a connection may wait for its next request's headers
MAX_BODY = 8 * 1024
USER_RATE, USER_BURST = 30 / 60, 30  # per second, at most


class Refusal(Exception):
    """An error answer: the class, its status (`unauthorized` is 401 or 403) and headers."""

    def __init__(self, cls, message, status=None, headers=()):
        super().__init__(message)
        self.cls, self.message = cls, message
        self.status = status or STATUS[cls]
        self.headers = list(headers)


def forbidden(message):
    return Refusal("unauthorized", message, 403)


class Bucket:
    """A token bucket (spec §9)."""

    def __init__(self, rate, burst):
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self):
        """None when a token was taken, else the seconds until one is back."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1, int((1 - self.tokens) / self.rate + 0.999))


class Record:
    def __init__(self, record_id, limit, ksf, password_file, envelope):
        self.record_id, self.limit, self.ksf = record_id, limit, ksf
        self.password_file, self.envelope = password_file, envelope
        self.state, self.guesses, self.version = "active", 0, 1

    def erase(self, state):
        self.state, self.password_file, self.envelope = state, None, None


class Vault:
    """The records, sessions and rate limits of one server (spec §3-§5, §9)."""

    def __init__(self, config):
        self.server_id = config.get("server_id", "coffer-vault")
        self.ksf = config.get("ksf", "argon2id:m=19456,t=2,p=1")
        self.lifetime = config.get("session_lifetime", 300)
        self.tenant_rate = config.get("tenant_rate", 10_000)
        self.state = config.get("state_dir")
        saved = self.load()
        self.setup_seed = saved["setup"] if saved else os.urandom(256)
        self.setup = opaque.ServerSetup(Draws(self.setup_seed))
        self.tokens = []       # (token bytes, tenant, is admin)
        self.user_keys = {}    # kid -> (tenant, Ed25519PublicKey)
        for tenant, entry in config["tenants"].items():
            self.tokens.append((entry["token"].encode(), tenant, False))
            if entry.get("admin_token"):
                self.tokens.append((entry["admin_token"].encode(), tenant, True))
            for kid, public in entry.get("user_keys", {}).items():
                self.user_keys[kid] = (tenant, Ed25519PublicKey.from_public_bytes(
                    bytes.fromhex(public)))
        self.lock = threading.Lock()
        self.records = {}      # (tenant, user) -> the latest Record
        self.record_ids = set()
        self.sessions = {}     # session id -> dict (between KE2 and KE3)
        self.verified = {}     # session id -> dict (after a verified KE3)
        self.buckets = {}      # (tenant, user) -> Bucket
        if saved:
            for entry in saved["records"]:
                record = Record(bytes.fromhex(entry["record_id"]), entry["limit"], entry["ksf"],
                                None, None)
                record.state, record.guesses = entry["state"], entry["guesses"]
                record.version = entry["version"]
                if entry["secrets"]:
                    record.password_file, record.envelope = (
                        bytes.fromhex(x) for x in entry["secrets"])
                self.records[(entry["tenant"], entry["user"])] = record
            self.record_ids = {bytes.fromhex(i) for i in saved["record_ids"]}

    def load(self):
        """The state a previous run saved in `state_dir`, or None."""
        if not self.state or not os.path.exists(os.path.join(self.state, "state.json")):
            return None
        with open(os.path.join(self.state, "state.json")) as f:
            saved = json.load(f)
        saved["setup"] = bytes.fromhex(saved["setup"])
        return saved

    def save(self):
        """Writes the records durably (temporary file, fsync, rename); call with the lock."""
        if not self.state:
            return
        records = [{"tenant": t, "user": u, "record_id": r.record_id.hex(), "limit": r.limit,
                    "ksf": r.ksf, "state": r.state, "guesses": r.guesses, "version": r.version,
                    "secrets": [r.password_file.hex(), r.envelope.hex()]
                    if r.password_file else None}
                   for (t, u), r in self.records.items()]
        path = os.path.join(self.state, "state.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"setup": self.setup_seed.hex(), "records": records,
                       "record_ids": [i.hex() for i in self.record_ids]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    def expiry(self):
        """When a session made now expires (spec §3.2 steps 2 and 4)."""
        return float("inf") if mutant("session-never-expires") else time.monotonic() + self.lifetime

    def key(self, tenant, user):
        return ("", user) if mutant("records-shared-by-tenants") else (tenant, user)

    def active(self, tenant, user):
        record = self.records.get(self.key(tenant, user))
        return record if record is not None and record.state == "active" else None

    def current(self, session):
        """The session's record if it is still the one KE1 counted against."""
        record = self.active(session["tenant"], session["user"])
        if record is None or mutant("version-unchecked"):
            return record
        same = (record.record_id, record.version) == (session["record_id"], session["version"])
        return record if same else None

    # -- credentials (spec §9, §9.3) --------------------------------------------------

    def credential(self, header):
        """(tenant, is admin, user-token subject or None), or a 401 Refusal."""
        challenge = [] if mutant("no-www-authenticate") else [("WWW-Authenticate", "Bearer")]
        if not header or not header.startswith("Bearer "):
            if mutant("token-unchecked"):
                return self.tokens[0][1], False, None
            raise Refusal("unauthorized", "no bearer token", 401, challenge)
        given = header[len("Bearer "):].encode()
        found = None
        for token, tenant, admin in self.tokens:
            if hmac.compare_digest(token, given):
                found = (tenant, admin, None)
        if found:
            return found
        if given.count(b".") == 2:
            claims = self.user_token(given.decode("ascii", "replace"))
            if claims:
                return claims
        if mutant("token-unchecked"):
            return self.tokens[0][1], False, None
        raise Refusal("unauthorized", "unknown token", 401, challenge)

    def user_token(self, token):
        """spec §9.3: (tenant, False, subject) for a valid user token, else None."""
        try:
            head, body, signature = token.split(".")
            header, claims = json.loads(unb64(head)), json.loads(unb64(body))
            tenant, public = self.user_keys[header["kid"]]
            if header.get("alg") != "EdDSA":
                return None
            if not mutant("user-token-signature-unchecked"):
                public.verify(unb64(signature), f"{head}.{body}".encode())
            now = time.time()
            timely = (claims["iat"] <= now + 60 and claims["exp"] >= now - 60
                      and claims["exp"] - claims["iat"] <= 3600)
            if claims["iss"] != tenant or not isinstance(claims["sub"], str):
                return None
            if not timely and not mutant("user-token-time-unchecked"):
                return None
            if claims["aud"] != self.server_id and not mutant("user-token-audience-unchecked"):
                return None
            return tenant, False, claims["sub"]
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return None

    def tenant_rate_limit(self, tenant):
        """spec §9: every authenticated request takes from its tenant's bucket."""
        if mutant("no-tenant-limit"):
            return
        key = ("", None) if mutant("tenant-limit-shared") else (tenant, None)
        with self.lock:
            bucket = self.buckets.setdefault(key, Bucket(self.tenant_rate, 2 * self.tenant_rate))
            wait = bucket.take()
        if wait is not None:
            raise Refusal("rate_limited", "too many requests for this tenant",
                          headers=[("Retry-After", str(wait))])

    def rate(self, tenant, user):
        if mutant("no-rate-limit"):
            return
        with self.lock:
            bucket = self.buckets.setdefault((tenant, user), Bucket(USER_RATE, USER_BURST))
            wait = bucket.take()
        if wait is not None:
            headers = [] if mutant("rate-limit-without-retry-after") else [("Retry-After", str(wait))]
            raise Refusal("rate_limited", "too many guesses for this user", headers=headers)

    # -- the flows (spec §3) -----------------------------------------------------------

    def register_start(self, tenant, user, body):
        request = field(body, "request", 32)
        if self.active(tenant, user) and not mutant("register-over-active"):
            raise forbidden("an active record exists")
        response = evaluate(self.setup, request, credential_id(tenant, user))
        return {"record_id": b64(os.urandom(16)), "response": b64(response), "ksf": self.ksf}

    def register_finish(self, tenant, user, body):
        record_id = field(body, "record_id", 16)
        upload, envelope = field(body, "upload", 192), field(body, "envelope", 60)
        limit = body.get("limit")
        check_upload(upload, envelope)
        if limit is None:
            limit = 10
        if not 1 <= limit <= 100 and not mutant("limit-unbounded"):
            raise Refusal("unsupported", f"limit {limit} is outside 1..=100")
        with self.lock:
            if self.active(tenant, user) and not mutant("register-over-active"):
                raise forbidden("an active record exists")
            if record_id in self.record_ids and not mutant("record-id-reused"):
                raise forbidden("that record id is taken")
            self.record_ids.add(record_id)
            self.records[self.key(tenant, user)] = Record(record_id, limit, self.ksf, upload,
                                                          envelope)
            self.save()
        return {"registered": True}

    def recover_start(self, tenant, user, body):
        ke1 = field(body, "ke1", None)
        record = None
        if mutant("malformed-ke1-counted"):
            record = self.count(tenant, user)
        if len(ke1) != 96:
            raise Refusal("malformed", "KE1 is 96 bytes")
        if mutant("invalid-element-counted"):
            record = self.count(tenant, user)
        for element in (ke1[:32], ke1[64:96]):
            try:
                decode_element(element)
            except Malformed as e:
                raise Refusal("malformed", f"KE1: {e}") from e
        if not (mutant("malformed-ke1-counted") or mutant("invalid-element-counted")):
            record = self.count(tenant, user)
        if record is None and mutant("fake-reply-404"):
            raise Refusal("no_record", "no such user")
        session_id = os.urandom(16)
        ke2, (client_mac, session_key) = opaque.server_login_start(
            self.setup, record.password_file if record else None, ke1,
            credential_id(tenant, user), user.encode(), RandomDraws())
        if record is not None or mutant("fake-session-no-record"):
            with self.lock:
                self.sessions[session_id] = {
                    "tenant": tenant, "user": user, "fake": record is None,
                    "record_id": record and record.record_id,
                    "version": record and record.version,
                    "client_mac": client_mac, "session_key": session_key,
                    "expires": self.expiry()}
        ksf = record.ksf if record else self.ksf
        return {"session_id": b64(session_id), "ke2": b64(ke2), "ksf": ksf}

    def count(self, tenant, user):
        """spec §4.2: counts a guess (or destroys a record without one left); the record it
        counted against, or None."""
        if mutant("count-unlocked"):
            with self.lock:
                record = self.active(tenant, user)
                used = record and record.guesses
            time.sleep(0.05)
            with self.lock:
                return record and self.saved(self.counted(record, used))
        with self.lock:
            record = self.active(tenant, user)
            return record and self.saved(self.counted(record, record.guesses))

    def saved(self, record):
        """`record`, once its count is durable (call with the lock)."""
        if not mutant("guess-not-saved"):
            self.save()
        return record

    @staticmethod
    def counted(record, used):
        """The record with `used` + 1 guesses, or None (destroyed) if it had none left."""
        if mutant("guess-counted-at-ke3"):
            return record
        limit = record.limit + 1 if mutant("one-guess-too-many") else record.limit
        if mutant("one-guess-too-few"):
            limit -= 1
        if used >= limit:
            record.erase("destroyed")
            return None
        record.guesses = used + 1
        return record

    def session_in(self, table, session_id, tenant, consume=True):
        """A live session of `tenant` in `table`, taken out if `consume` (it stays for any
        other tenant)."""
        with self.lock:
            session = table.get(session_id)
            if session is None or session["expires"] < time.monotonic():
                table.pop(session_id, None)
                return None
            if consume and mutant("other-tenant-ends-session"):
                table.pop(session_id)
            if session["tenant"] != tenant and not mutant("sessions-unbound-to-tenant"):
                return None
            if consume:
                table.pop(session_id, None)
            return session

    def finish(self, tenant, session_id, body):
        ke3 = field(body, "ke3", 64)
        session = self.session_in(self.sessions, session_id, tenant)
        if session is None:
            raise Refusal("wrong_password", "unknown, used or expired session")
        if session["fake"]:
            raise Refusal("no_record", "no such user")
        if mutant("session-reused"):
            with self.lock:
                self.sessions[session_id] = session
        with self.lock:
            record = self.current(session)
            if not hmac.compare_digest(ke3, session["client_mac"]):
                if mutant("guess-counted-at-ke3") and record is not None:
                    record.guesses += 1
                if (record is not None and record.guesses >= record.limit
                        and not mutant("no-destroy-at-failed-ke3")):
                    record.erase("destroyed")
                    self.save()
                raise Refusal("wrong_password", "KE3 does not verify")
            if record is None:
                raise Refusal("locked", "the record changed since KE1")
            if not mutant("success-keeps-count"):
                record.guesses = 0
                self.save()
            self.verified[session_id] = dict(session, expires=self.expiry())
            release = opaque.seal_release(session["session_key"], session_id, record.record_id,
                                          record.version, record.envelope, os.urandom(12))
        return {"release": b64(release)}

    def verified_session(self, tenant, session_id, consume, unverified_ok=False):
        """The verified session (spec §3.3), or `unauthorized`; `unverified_ok` is a mutant's
        leave to take a session whose KE3 was never sent."""
        session = self.session_in(self.verified, session_id, tenant, consume)
        if session is None and unverified_ok:
            with self.lock:
                pending = self.sessions.get(session_id)
            if pending is not None and pending["tenant"] == tenant and not pending["fake"]:
                return pending
        if session is None:
            raise forbidden("no verified session")
        return session

    def current_or_locked(self, session):
        """The session's record unchanged since its recovery, or `locked` (with the lock)."""
        record = self.current(session)
        if record is None:
            raise Refusal("locked", "the record changed since the recovery")
        return record

    def password_start(self, tenant, session_id, body):
        request = field(body, "request", 32)
        session = self.verified_session(tenant, session_id, consume=False,
                                        unverified_ok=mutant("change-unverified"))
        with self.lock:
            record = self.current_or_locked(session)
        response = evaluate(self.setup, request, credential_id(tenant, session["user"]))
        return {"record_id": b64(record.record_id), "response": b64(response), "ksf": self.ksf}

    def password_finish(self, tenant, session_id, body):
        upload, envelope = field(body, "upload", 192), field(body, "envelope", 60)
        check_upload(upload, envelope)
        session = self.verified_session(tenant, session_id, consume=True)
        with self.lock:
            record = self.current_or_locked(session)
            record.password_file, record.envelope, record.ksf = upload, envelope, self.ksf
            record.version, record.guesses = record.version + 1, 0
            self.save()
            return {"version": record.version}

    def session_delete(self, tenant, session_id, body):
        session = self.verified_session(tenant, session_id,
                                        consume=not mutant("delete-session-reused"),
                                        unverified_ok=mutant("delete-unverified"))
        with self.lock:
            self.current_or_locked(session).erase("deleted")
            self.save()
        return {"deleted": True}

    def admin_delete(self, tenant, user):
        with self.lock:
            record = self.active(tenant, user)
            if record is None:
                raise Refusal("no_record", "no active record")
            record.erase("deleted")
            self.save()
        return {"deleted": True}

    def status(self, tenant, user):
        with self.lock:
            record = self.records.get(self.key(tenant, user))
            if record is None:
                return {"registered": False, "state": None, "guesses_left": 0, "limit": 0}
            if record.state != "active":
                return {"registered": False, "state": record.state, "guesses_left": 0,
                        "limit": 0}
            left = record.guesses if mutant("status-counts-used") else record.limit - record.guesses
            return {"registered": True, "state": "active", "guesses_left": left,
                    "limit": record.limit}


def credential_id(tenant, user):
    """spec §2: tenant ‖ 00 ‖ user."""
    return tenant.encode() + b"\x00" + user.encode()


def evaluate(setup, request, cred_id):
    try:
        return opaque.registration_response(setup, request, cred_id)
    except opaque.VaultError as e:
        raise Refusal("malformed", str(e)) from e


def check_upload(upload, envelope):
    try:
        opaque.check_upload(upload, envelope)
    except opaque.VaultError as e:
        raise Refusal("malformed", str(e)) from e


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


B64URL = re.compile(r"[A-Za-z0-9_-]*")


def unb64(text):
    """base64url without padding, strictly (spec §10)."""
    if mutant("base64-lenient"):
        text = re.sub(r"[^A-Za-z0-9_-]", "", text)
        text = text[:len(text) - (len(text) % 4 == 1)]
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if not B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def field(body, name, length):
    """A base64url field of `length` bytes (any length for None)."""
    value = body.get(name)
    if not isinstance(value, str):
        raise Refusal("malformed", f"{name} must be a string")
    try:
        data = unb64(value)
    except ValueError as e:
        raise Refusal("malformed", f"{name}: {e}") from e
    if length is not None and len(data) != length:
        raise Refusal("malformed", f"{name} must be {length} bytes")
    return data


# (method, path pattern, handler name, kind of path parameter, JSON fields: required, optional)
ROUTES = [
    ("POST", ("users", None, "register", "start"), "register_start", "user", {"request"}, set()),
    ("POST", ("users", None, "register", "finish"), "register_finish", "user",
     {"record_id", "upload", "envelope"}, {"limit"}),
    ("POST", ("users", None, "recover", "start"), "recover_start", "user", {"ke1"}, set()),
    ("GET", ("users", None, "status"), "status", "user", None, None),
    ("DELETE", ("users", None), "admin_delete", "user", None, None),
    ("POST", ("sessions", None, "finish"), "finish", "session", {"ke3"}, set()),
    ("POST", ("sessions", None, "password", "start"), "password_start", "session",
     {"request"}, set()),
    ("POST", ("sessions", None, "password", "finish"), "password_finish", "session",
     {"upload", "envelope"}, set()),
    ("POST", ("sessions", None, "delete"), "session_delete", "session", set(), set()),
]


def route(method, segments):
    """(route, parameter), or a Refusal: 400 for an unknown path, 405 for a wrong method."""
    matches = [r for r in ROUTES if len(r[1]) == len(segments)
               and all(p is None or p == s for p, s in zip(r[1], segments))]
    if not matches:
        raise Refusal("malformed", "no such path", 404 if mutant("unknown-route-404") else 400)
    for r in matches:
        if r[0] == method:
            return r, segments[r[1].index(None)]
    if mutant("unknown-route-404"):
        raise Refusal("malformed", "wrong method", 400)
    allow = ", ".join(sorted({r[0] for r in matches}))
    raise Refusal("malformed", f"{method} is not allowed here", 405, [("Allow", allow)])


def strict_json(raw, required, optional):
    """spec §10: an object with exactly the fields named (duplicates refused)."""
    def pairs(items):
        seen = {}
        for key, value in items:
            if key in seen:
                raise ValueError(f"field {key} given twice")
            seen[key] = value
        return seen
    if required == set() and raw.strip() == b"":
        return {}
    try:
        body = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal("malformed", f"not JSON: {e}") from e
    if not isinstance(body, dict):
        raise Refusal("malformed", "the body must be an object")
    unknown = set(body) - required - optional
    if unknown and not mutant("unknown-fields-accepted"):
        raise Refusal("malformed", f"unknown fields {sorted(unknown)}")
    if required - set(body):
        raise Refusal("malformed", f"missing fields {sorted(required - set(body))}")
    limit = body.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise Refusal("malformed", "limit must be an integer")
    return body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "coffer-vault-model/1"
    vault = None  # set by main

    def version_string(self):
        return self.server_version

    def log_message(self, *_):
        pass

    def do_GET(self):
        self.answer("GET")

    def do_POST(self):
        self.answer("POST")

    def do_DELETE(self):
        self.answer("DELETE")

    def answer(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            self.close_connection = True
            raw = b""
        else:
            raw = self.rfile.read(length)
        try:
            status, body, headers = 200, self.serve(method, length, raw), []
        except Refusal as r:
            status, body, headers = r.status, {"error": r.cls, "message": r.message}, r.headers
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def serve(self, method, length, raw):
        """spec §10's order: route, credential, the user token's user and the path's
        parameter, the user's rate limit, the admin check, the body's size, its JSON, the
        state."""
        vault = self.vault
        try:
            segments = self.path.split("?", 1)[0].split("/")
            if segments[:2] != ["", "v1"]:
                raise Refusal("malformed", "no such path")
            segments = tuple(unquote_to_bytes(s).decode("utf-8") for s in segments[2:])
        except UnicodeDecodeError as e:
            raise Refusal("malformed", "the path is not UTF-8") from e
        (_, _, name, kind, required, optional), parameter = route(method, segments)
        tenant, admin, subject = vault.credential(self.headers.get("Authorization"))
        vault.tenant_rate_limit(tenant)
        if kind == "user":
            user = parameter
            if subject is not None and subject != user and not mutant("user-token-any-user"):
                raise forbidden("the user token is another user's")
            size = len(user.encode())
            if not (1 <= size <= 256 or mutant("user-id-unbounded")) or "\x00" in user:
                raise Refusal("malformed", "a user id is 1..=256 bytes without NUL")
            args = (tenant, user)
        else:
            try:
                session_id = unb64(parameter)
            except ValueError as e:
                raise Refusal("malformed", f"session id: {e}") from e
            if len(session_id) != 16 and not mutant("session-id-any-length"):
                raise Refusal("malformed", "a session id is 16 bytes")
            if subject is not None and not mutant("user-token-any-user"):
                with vault.lock:
                    session = vault.sessions.get(session_id) or vault.verified.get(session_id)
                if session is not None and session["user"] != subject:
                    raise forbidden("the session is another user's")
            args = (tenant, session_id)
        if name in ("register_start", "recover_start"):
            vault.rate(tenant, user)
        if name == "admin_delete" and not admin and not mutant("delete-with-tenant-token"):
            raise forbidden("deleting without the password needs the admin token")
        if length > MAX_BODY and not mutant("body-unbounded"):
            raise Refusal("malformed", "the body is over 8 KiB", 413)
        if required is None:
            return getattr(vault, name)(*args)
        return getattr(vault, name)(*args, strict_json(raw, required, optional))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that went away (the oversized case may) is not the model's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def restart(state_dir):
    """SIGKILLs the model running over `state_dir` and starts it again with its arguments on
    its port; returns once the new one listens."""
    with open(os.path.join(state_dir, "run.json")) as f:
        run = json.load(f)
    os.kill(run["pid"], signal.SIGKILL)
    new = subprocess.Popen([sys.executable, os.path.abspath(__file__), *run["argv"],
                            "--port", str(run["port"])],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    line = new.stdout.readline()
    if not line.startswith("listening "):
        print(f"the restarted model said {line!r}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    global MUTANT
    if argv[:1] == ["--list"]:
        for name, step, what in MUTANTS:
            print(json.dumps({"name": name, "step": step, "what": what}))
        return 0
    if argv[:1] == ["--restart"]:
        return restart(argv[1])
    config = json.load(open(argv[argv.index("--config") + 1]))
    if "--mutant" in argv:
        MUTANT = argv[argv.index("--mutant") + 1]
        assert any(m[0] == MUTANT for m in MUTANTS), f"no mutant {MUTANT}"
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    Handler.vault = Vault(config)
    Handler.timeout = None if mutant("stalled-connection-kept") else HEADER_TIMEOUT
    for attempt in range(50):  # a killed predecessor's socket may take a moment to close
        try:
            server = Server(("127.0.0.1", port), Handler)
            break
        except OSError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    port = server.server_address[1]
    if config.get("state_dir"):
        given = [a for i, a in enumerate(argv)
                 if a != "--port" and (i == 0 or argv[i - 1] != "--port")]
        with open(os.path.join(config["state_dir"], "run.json"), "w") as f:
            json.dump({"pid": os.getpid(), "port": port, "argv": given}, f)
    print(f"listening http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
