"""An independent, clean-room reader of vectors/vault.yaml (spec/vault.md), used by
check_vectors.py: OPAQUE (RFC 9807) with the OPRF ristretto255-SHA512 (RFC 9497), 3DH,
HKDF/HMAC-SHA-512 and the Argon2id KSF; Coffer's envelope and release (spec §3.4); the draws
of spec §3.5; and an in-memory vault with the record state machine of spec §3-§5, written
from the specs' text and the RFCs alone (no Rust code, no opaque-ke source).

ristretto255, expand_message_xmd and the recorded-randomness reader come from
realms_check.py beside this file. Needs only the standard library and `cryptography`.
"""
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

import realms_check
from realms_check import BASE, Draws, Malformed, RandomDraws, decode_element, invert

# spec §2 and the transcript group's description.
CONTEXT = b"coffer-vault-v1"
SERVER_ID = b"coffer-vault"
TENANT = b"vectors"
VECTOR_KSF = "argon2id:m=256,t=1,p=1"

# RFC 9497 §4.1 (ristretto255-SHA512, mode 0x00) and RFC 9807 §7 sizes.
OPRF_CONTEXT = b"OPRFV1-\x00-ristretto255-SHA512"
NN, NH, NPK, NSEED = 32, 64, 32, 32
ENVELOPE_LEN = NN + NH


class VaultError(Exception):
    """A failure with its error class (spec §8)."""

    def __init__(self, error_class, why=""):
        super().__init__(f"{error_class}: {why}" if why else error_class)
        self.error_class = error_class


# ---------------------------------------------------------------------------------------
# HKDF and HMAC with SHA-512 (RFC 5869; RFC 9807 §7's KDF and MAC)

def extract(salt, ikm):
    """HKDF-Extract with SHA-512 (an empty salt is HashLen zero bytes, the same key)."""
    return hmac.new(salt, ikm, hashlib.sha512).digest()


def expand(prk, info, length):
    """HKDF-Expand with SHA-512."""
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha512).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def mac(key, msg):
    """HMAC-SHA-512."""
    return hmac.new(key, msg, hashlib.sha512).digest()


def i2osp2(data):
    """I2OSP(len(data), 2) ‖ data."""
    return len(data).to_bytes(2, "big") + data


def xor(a, b):
    """Bytewise XOR of two strings of the same length."""
    return bytes(x ^ y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------
# The OPRF (RFC 9497 §4.1, §3.2, §3.3.1)

def hash_to_group(msg):
    """RFC 9497 §4.1: hash_to_ristretto255 with DST "HashToGroup-" ‖ contextString."""
    uniform = realms_check.expand_message_xmd_sha512(msg, b"HashToGroup-" + OPRF_CONTEXT, 64)
    return realms_check.from_uniform_bytes(uniform)


def hash_to_scalar(msg, dst):
    """RFC 9497 §4.1: 64 uniform bytes, little-endian, reduced mod the group order."""
    uniform = realms_check.expand_message_xmd_sha512(msg, dst, 64)
    return int.from_bytes(uniform, "little") % realms_check.Q


def derive_key_pair(seed, info):
    """RFC 9497 §3.2.1: DeriveKeyPair(seed, info) -> (sk, pk element)."""
    derive_input = seed + i2osp2(info)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + OPRF_CONTEXT)
        if sk:
            return sk, sk * BASE
    raise VaultError("io", "DeriveKeyPairError")


def blind(password, draws):
    """RFC 9497 §3.3.1 Blind: (blind, blinded element); the blind is one scalar draw."""
    r = draws.scalar()
    element = hash_to_group(password)
    if element == realms_check.IDENTITY:
        raise VaultError("io", "InvalidInputError")
    return r, r * element


def finalize(password, r, evaluated):
    """RFC 9497 §3.3.1 Finalize."""
    unblinded = (invert(r) * evaluated).encode()
    return hashlib.sha512(i2osp2(password) + i2osp2(unblinded) + b"Finalize").digest()


# ---------------------------------------------------------------------------------------
# OPAQUE's key derivations and envelope (RFC 9807 §4, §5, §6.4)

def dh_key_pair(seed):
    """RFC 9807 §6.4.1: DeriveDiffieHellmanKeyPair(seed)."""
    return derive_key_pair(seed, b"OPAQUE-DeriveDiffieHellmanKeyPair")


def oprf_key(oprf_seed, credential_id):
    """RFC 9807 §5.2.2: the per-credential OPRF key."""
    seed = expand(oprf_seed, credential_id + b"OprfKey", NSEED)
    return derive_key_pair(seed, b"OPAQUE-DeriveKeyPair")[0]


def stretch(data, ksf):
    """spec §2: Argon2id (0x13) of the OPRF output, 64 bytes, salt 16 zero bytes."""
    m, t, p = realms_check.parse_ksf(ksf)
    kdf = Argon2id(salt=bytes(16), length=64, iterations=t, lanes=p, memory_cost=m)
    return kdf.derive(data)


def randomized_password(password, r, evaluated, ksf):
    """RFC 9807 §5.2.3: Extract("", oprf_output ‖ Stretch(oprf_output))."""
    oprf_output = finalize(password, r, evaluated)
    return extract(b"", oprf_output + stretch(oprf_output, ksf))


def cleartext_credentials(server_pk, client_pk, server_id, client_id):
    """RFC 9807 §4.1.1: CreateCleartextCredentials."""
    return server_pk + i2osp2(server_id or server_pk) + i2osp2(client_id or client_pk)


def envelope_keys(rwd, nonce):
    """RFC 9807 §4.1.2: (auth_key, export_key, client private key, client public key)."""
    auth_key = expand(rwd, nonce + b"AuthKey", NH)
    export_key = expand(rwd, nonce + b"ExportKey", NH)
    sk, pk = dh_key_pair(expand(rwd, nonce + b"PrivateKey", NSEED))
    return auth_key, export_key, sk, pk.encode()


def three_dh(*pairs):
    """RFC 9807 §6.4.2: ikm = dh1 ‖ dh2 ‖ dh3, each the encoding of scalar · element."""
    return b"".join((k * element).encode() for k, element in pairs)


def derive_keys(ikm, preamble):
    """RFC 9807 §6.4.2: (Km2, Km3, session_key)."""
    prk = extract(b"", ikm)
    transcript_hash = hashlib.sha512(preamble).digest()
    handshake_secret = derive_secret(prk, b"HandshakeSecret", transcript_hash)
    session_key = derive_secret(prk, b"SessionKey", transcript_hash)
    km2 = derive_secret(handshake_secret, b"ServerMAC", b"")
    km3 = derive_secret(handshake_secret, b"ClientMAC", b"")
    return km2, km3, session_key


def derive_secret(secret, label, context):
    """RFC 9807 §6.4.2: Derive-Secret = Expand-Label(secret, label, context, Nx)."""
    full = b"OPAQUE-" + label
    custom = NH.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return expand(secret, custom, NH)


def preamble_of(client_id, ke1, server_id, credential_response, server_nonce, keyshare):
    """RFC 9807 §6.4.1: Preamble, with the context of spec §2."""
    return (b"OPAQUEv1-" + i2osp2(CONTEXT) + i2osp2(client_id) + ke1 + i2osp2(server_id)
            + credential_response + server_nonce + keyshare)


def mac_pair(km2, km3, preamble):
    """RFC 9807 §6.4.3: (server_mac, client_mac)."""
    server_mac = mac(km2, hashlib.sha512(preamble).digest())
    return server_mac, mac(km3, hashlib.sha512(preamble + server_mac).digest())


def credential_id(user):
    """spec §2: tenant ‖ 00 ‖ user."""
    return TENANT + b"\x00" + user


# ---------------------------------------------------------------------------------------
# The client (RFC 9807 §5.2, §6.2; spec §3.1, §3.2, §3.5 draws)

def client_registration_start(password, draws):
    """spec §3.1 step 1: (blind, RegistrationRequest); draws the blind (64)."""
    r, blinded = blind(password, draws)
    return r, blinded.encode()


def received_evaluation(evaluated_bytes, blinded_bytes):
    """The server's evaluated element; a reflected blinded element is `server_auth_failed`
    (spec §8)."""
    if evaluated_bytes == blinded_bytes:
        raise VaultError("server_auth_failed", "reflected blinded element")
    try:
        return decode_element(evaluated_bytes)
    except Malformed as e:
        raise VaultError("malformed", str(e)) from e


def client_registration_finish(password, r, request, response, user, ksf, draws):
    """spec §3.1 step 3, RFC 9807 §5.2.3: (RegistrationUpload, export_key); draws the
    OPAQUE envelope nonce (32)."""
    evaluated = received_evaluation(response[:32], request)
    server_pk = response[32:]
    rwd = randomized_password(password, r, evaluated, ksf)
    nonce = draws.take(NN)
    masking_key = expand(rwd, b"MaskingKey", NH)
    auth_key, export_key, _, client_pk = envelope_keys(rwd, nonce)
    clear = cleartext_credentials(server_pk, client_pk, SERVER_ID, user)
    envelope = nonce + mac(auth_key, nonce + clear)
    return client_pk + masking_key + envelope, export_key


class ClientLogin:
    """One recovery's client state (RFC 9807 §6.2.3, §6.2.4)."""

    def __init__(self, password, draws):
        """spec §3.5: draws the blind (64), the keyshare seed (32), the client nonce (32)."""
        self.password = password
        self.r, blinded = blind(password, draws)
        seed, nonce = draws.take(NSEED), draws.take(NN)
        self.keyshare_sk, keyshare_pk = dh_key_pair(seed)
        self.ke1 = blinded.encode() + nonce + keyshare_pk.encode()

    def finish(self, ke2, user, ksf):
        """spec §3.2 step 3: (KE3, session_key, export_key), or VaultError."""
        if len(ke2) != 320:
            raise VaultError("malformed", "KE2 length")
        evaluated = received_evaluation(ke2[:32], self.ke1[:32])
        masking_nonce, masked = ke2[32:64], ke2[64:192]
        server_nonce, server_keyshare, server_mac = ke2[192:224], ke2[224:256], ke2[256:]
        rwd = randomized_password(self.password, self.r, evaluated, ksf)
        masking_key = expand(rwd, b"MaskingKey", NH)
        pad = expand(masking_key, masking_nonce + b"CredentialResponsePad", NPK + ENVELOPE_LEN)
        clear_response = xor(pad, masked)
        server_pk, nonce, auth_tag = clear_response[:32], clear_response[32:64], clear_response[64:]
        auth_key, export_key, client_sk, client_pk = envelope_keys(rwd, nonce)
        clear = cleartext_credentials(server_pk, client_pk, SERVER_ID, user)
        if not hmac.compare_digest(mac(auth_key, nonce + clear), auth_tag):
            raise VaultError("wrong_password", "envelope")
        try:
            server_pk_el, keyshare_el = decode_element(server_pk), decode_element(server_keyshare)
        except Malformed as e:
            raise VaultError("wrong_password", str(e)) from e
        ikm = three_dh((self.keyshare_sk, keyshare_el), (self.keyshare_sk, server_pk_el),
                       (client_sk, keyshare_el))
        preamble = preamble_of(user, self.ke1, SERVER_ID, ke2[:192], server_nonce, server_keyshare)
        km2, km3, session_key = derive_keys(ikm, preamble)
        expected_server_mac, client_mac = mac_pair(km2, km3, preamble)
        if not hmac.compare_digest(expected_server_mac, server_mac):
            raise VaultError("wrong_password", "server MAC")
        return client_mac, session_key, export_key


# ---------------------------------------------------------------------------------------
# The server's OPAQUE part (RFC 9807 §5.2.2, §6.2.2; spec §3.5, §5)

class ServerSetup:
    """spec §3.5: `ServerSetup::new` draws the server key pair's scalar (64), the OPRF seed
    (64) and the fake-reply key pair's scalar (64)."""

    def __init__(self, draws):
        self.sk = draws.scalar()
        self.pk = (self.sk * BASE).encode()
        self.oprf_seed = draws.take(NH)
        self.fake_pk = (draws.scalar() * BASE).encode()


def registration_response(setup, request, cred_id):
    """RFC 9807 §5.2.2: evaluated element ‖ server public key (64 bytes)."""
    try:
        blinded = decode_element(request)
    except Malformed as e:
        raise VaultError("malformed", str(e)) from e
    return (oprf_key(setup.oprf_seed, cred_id) * blinded).encode() + setup.pk


def server_login_start(setup, record, ke1, cred_id, user, draws):
    """RFC 9807 §6.2.2 with spec §3.5's draws: a fake record's masking key (64, always), the
    masking nonce (32), the server keyshare seed (32), the server nonce (32). Without a
    record, a fake one (spec §5, RFC 9807 §10.9): the setup's fake public key, the drawn
    masking key and an envelope of 96 zero bytes (which the spec does not state; the
    vectors need it). Returns (KE2, (expected KE3, session key))."""
    fake_masking_key = draws.take(NH)
    if record is None:
        record = setup.fake_pk + fake_masking_key + bytes(ENVELOPE_LEN)
    client_pk, masking_key, envelope = record[:32], record[32:96], record[96:]
    try:
        blinded, keyshare = decode_element(ke1[:32]), decode_element(ke1[64:96])
    except Malformed as e:
        raise VaultError("malformed", str(e)) from e
    evaluated = (oprf_key(setup.oprf_seed, cred_id) * blinded).encode()
    masking_nonce = draws.take(NN)
    pad = expand(masking_key, masking_nonce + b"CredentialResponsePad", NPK + ENVELOPE_LEN)
    credential_response = evaluated + masking_nonce + xor(pad, setup.pk + envelope)
    seed, server_nonce = draws.take(NSEED), draws.take(NN)
    keyshare_sk, keyshare_pk = dh_key_pair(seed)
    ikm = three_dh((keyshare_sk, keyshare), (setup.sk, keyshare),
                   (keyshare_sk, decode_element(client_pk)))
    preamble = preamble_of(user, ke1, SERVER_ID, credential_response, server_nonce,
                           keyshare_pk.encode())
    km2, km3, session_key = derive_keys(ikm, preamble)
    server_mac, client_mac = mac_pair(km2, km3, preamble)
    ke2 = credential_response + server_nonce + keyshare_pk.encode() + server_mac
    return ke2, (client_mac, session_key)


# ---------------------------------------------------------------------------------------
# Coffer's envelope and release (spec §3.4)

def hkdf_sha512(ikm, info):
    """spec §3.4: HKDF-SHA512(salt = none, ikm, info, L = 32)."""
    return expand(extract(b"", ikm), info, 32)


def seal_envelope(export_key, record_id, version, root_key, nonce):
    """spec §3.4: the 60-byte envelope of K."""
    key = hkdf_sha512(export_key, b"coffer/v1 vault envelope key")
    aad = b"coffer/v1 envelope" + record_id + version.to_bytes(4, "big")
    return nonce + AESGCM(key).encrypt(nonce, root_key, aad)


def open_envelope(export_key, record_id, version, envelope):
    """spec §3.4: K, or `server_auth_failed`."""
    key = hkdf_sha512(export_key, b"coffer/v1 vault envelope key")
    aad = b"coffer/v1 envelope" + record_id + version.to_bytes(4, "big")
    return aead_open(key, envelope, aad)


def seal_release(session_key, session_id, record_id, version, envelope, nonce):
    """spec §3.4: the release of record id ‖ version ‖ envelope."""
    key = hkdf_sha512(session_key, b"coffer/v1 vault transport key")
    plain = record_id + version.to_bytes(4, "big") + envelope
    return nonce + AESGCM(key).encrypt(nonce, plain, b"coffer/v1 transport" + session_id)


def open_release(session_key, session_id, export_key, release):
    """spec §3.2 step 5: opens the release, then the envelope: (record id, version, K)."""
    key = hkdf_sha512(session_key, b"coffer/v1 vault transport key")
    plain = aead_open(key, release, b"coffer/v1 transport" + session_id)
    if len(plain) != 16 + 4 + 60:
        raise VaultError("server_auth_failed", "release length")
    record_id, version = plain[:16], int.from_bytes(plain[16:20], "big")
    return record_id, version, open_envelope(export_key, record_id, version, plain[20:])


def aead_open(key, sealed, aad):
    """nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16), or `server_auth_failed`."""
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
    except (InvalidTag, ValueError) as e:
        raise VaultError("server_auth_failed", "does not open") from e


# ---------------------------------------------------------------------------------------
# The vault: records, sessions and the state machine (spec §3, §4, §5)

class Record:
    """A record of spec §4.1; `secrets` is (password file, envelope) while active."""

    def __init__(self, record_id, limit, ksf, secrets):
        self.record_id, self.limit, self.ksf, self.secrets = record_id, limit, ksf, secrets
        self.state, self.guesses, self.version = "active", 0, 1

    def erase(self, state):
        """spec §4.2: destruction or deletion erases the secrets."""
        self.state, self.secrets = state, None


class Vault:
    """An in-memory vault. Every call that draws takes the `draws` of spec §3.5."""

    def __init__(self, setup_draws, ksf=VECTOR_KSF, default_limit=10, limits=(1, 100)):
        self.setup = ServerSetup(setup_draws)
        self.ksf, self.default_limit, self.limits = ksf, default_limit, limits
        self.records = {}   # user -> the user's latest record
        self.sessions = {}  # session id -> (user, record id, version, envelope, login state)
        self.verified = {}  # session id -> (user, record id, version)

    def active(self, user):
        record = self.records.get(user)
        return record if record is not None and record.state == "active" else None

    def current(self, user, record_id, version):
        """The user's active record if it is still (record id, version), else None."""
        record = self.active(user)
        if record is None or (record.record_id, record.version) != (record_id, version):
            return None
        return record

    def status(self, user):
        """spec §3.3: (state, guesses left), `none` without a record."""
        record = self.records.get(user)
        if record is None:
            return "none", 0
        return record.state, record.limit - record.guesses if record.state == "active" else 0

    def register_start(self, user, request, draws):
        """spec §3.1 step 2: (response, record id, KSF); draws the record id (16)."""
        if self.active(user):
            raise VaultError("unauthorized", "an active record exists")
        response = registration_response(self.setup, request, credential_id(user))
        return response, draws.take(16), self.ksf

    def register_finish(self, user, record_id, upload, envelope, limit=None):
        """spec §3.1 step 4."""
        limit = self.default_limit if limit is None else limit
        if not self.limits[0] <= limit <= self.limits[1]:
            raise VaultError("unsupported", f"limit {limit}")
        if self.active(user):
            raise VaultError("unauthorized", "an active record exists")
        check_upload(upload, envelope)
        self.records[user] = Record(record_id, limit, self.ksf, (upload, envelope))

    def recover_start(self, user, ke1, draws):
        """spec §3.2 step 2, §4.2: draws the session id (16), counts the guess (or destroys
        the record at its limit), then computes KE2. Returns (session id, KE2, KSF)."""
        if len(ke1) != 96:
            raise VaultError("malformed", "KE1 length")
        session_id = draws.take(16)
        record = self.active(user)
        if record is not None and record.guesses >= record.limit:
            record.erase("destroyed")
            record = None
        if record is not None:
            record.guesses += 1
        password_file = record.secrets[0] if record else None
        ke2, login = server_login_start(self.setup, password_file, ke1, credential_id(user),
                                        user, draws)
        if record is None:
            return session_id, ke2, self.ksf
        self.sessions[session_id] = (user, record.record_id, record.version,
                                     record.secrets[1], login)
        return session_id, ke2, record.ksf

    def recover_finish(self, session_id, ke3, draws):
        """spec §3.2 step 4: the release; draws its nonce (12) only when it releases."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            raise VaultError("wrong_password", "unknown, used or fake session")
        user, record_id, version, envelope, (client_mac, session_key) = session
        record = self.current(user, record_id, version)
        if not hmac.compare_digest(ke3, client_mac):
            if record is not None and record.guesses >= record.limit:
                record.erase("destroyed")
            raise VaultError("wrong_password", "KE3")
        if record is None:
            raise VaultError("locked", "destroyed or changed since KE1")
        record.guesses = 0
        self.verified[session_id] = (user, record_id, version)
        return seal_release(session_key, session_id, record_id, version, envelope, draws.take(12))

    def verified_record(self, session_id, consume):
        """A verified session's record: `unauthorized` without one, `locked` if changed."""
        take = self.verified.pop if consume else self.verified.get
        verified = take(session_id, None)
        if verified is None:
            raise VaultError("unauthorized", "no verified session")
        record = self.current(*verified)
        if record is None:
            raise VaultError("locked", "changed since the recovery")
        return record

    def password_start(self, session_id, request):
        """spec §3.3: a registration response on a verified session: (response, KSF)."""
        self.verified_record(session_id, consume=False)
        user = self.verified[session_id][0]
        return registration_response(self.setup, request, credential_id(user)), self.ksf

    def password_finish(self, session_id, upload, envelope):
        """spec §3.3: new secrets, version + 1, guesses 0; consumes the session."""
        record = self.verified_record(session_id, consume=True)
        check_upload(upload, envelope)
        record.secrets, record.ksf = (upload, envelope), self.ksf
        record.version, record.guesses = record.version + 1, 0

    def delete_user(self, user):
        """spec §3.3: `DELETE /v1/users/{user}` with the admin token."""
        record = self.active(user)
        if record is None:
            raise VaultError("no_record")
        record.erase("deleted")


def check_upload(upload, envelope):
    """spec §8: `malformed` for an upload or envelope of the wrong size or encoding."""
    if len(upload) != 192 or len(envelope) != 60:
        raise VaultError("malformed", "upload or envelope size")
    try:
        decode_element(upload[:32])
    except Malformed as e:
        raise VaultError("malformed", str(e)) from e


# ---------------------------------------------------------------------------------------
# Whole flows, client and vault together

def register(vault, user, password, root_key, draws, limit=None, change=None):
    """spec §3.1, or with `change` = (verified session id, record id, version) the password
    change of §3.3. `draws` is (client start, vault start, client finish) of spec §3.5.
    Returns the messages; raises VaultError."""
    client_start, server_start, client_finish = draws
    r, request = client_registration_start(password, client_start)
    if change is None:
        response, record_id, ksf = vault.register_start(user, request, server_start)
        version = 1
    else:
        session_id, record_id, version = change
        response, ksf = vault.password_start(session_id, request)
        version += 1
    upload, export_key = client_registration_finish(password, r, request, response, user, ksf,
                                                    client_finish)
    envelope = seal_envelope(export_key, record_id, version, root_key, client_finish.take(12))
    if change is None:
        vault.register_finish(user, record_id, upload, envelope, limit)
    else:
        vault.password_finish(session_id, upload, envelope)
    return {"registration_request": request, "registration_response": response,
            "record_id": record_id, "registration_upload": upload, "envelope": envelope}


def recover(vault, user, password, draws, log, send_ke3=True):
    """spec §3.2 up to KE3 (and its release with `send_ke3`). `draws` is (client start,
    vault start, vault finish); every message goes into `log`. Returns what the release
    holds, (record id, version, K), or without `send_ke3` the held (session id, KE3, session
    key, export key); raises VaultError."""
    client_start, server_start, server_finish = draws
    client = ClientLogin(password, client_start)
    log["ke1"] = client.ke1
    session_id, ke2, ksf = vault.recover_start(user, client.ke1, server_start)
    log.update(session_id=session_id, ke2=ke2)
    ke3, session_key, export_key = client.finish(ke2, user, ksf)
    log.update(ke3=ke3, session_key=session_key, export_key=export_key)
    held = (session_id, ke3, session_key, export_key)
    return release_held(vault, held, server_finish, log) if send_ke3 else held


def release_held(vault, held, server_finish, log):
    """spec §3.2 steps 4-5: sends KE3, opens the release and the envelope: (record id,
    version, K)."""
    session_id, ke3, session_key, export_key = held
    release = vault.recover_finish(session_id, ke3, server_finish)
    log["release"] = release
    opened = open_release(session_key, session_id, export_key, release)
    log["recovered_key"] = opened[2]
    return opened


# ---------------------------------------------------------------------------------------
# The `transcript` group

TRANSCRIPT_CALLS = ["server_setup", "registration_client_start", "registration_server_start",
                    "registration_client_finish", "recovery_client_start",
                    "recovery_server_start", "recovery_server_finish"]


def run_transcript(case, draws):
    """Registration (unless its randomness is empty) and recovery: (messages, outcome)."""
    user, messages = case["user"].encode(), {}
    vault = Vault(draws["server_setup"])
    try:
        if draws["registration_client_start"].left():
            calls = [draws[c] for c in TRANSCRIPT_CALLS[1:4]]
            messages.update(register(vault, user, case["password"].encode(),
                                     bytes.fromhex(case["root_key"]), calls))
        calls = [draws[c] for c in TRANSCRIPT_CALLS[4:]]
        recover(vault, user, case["recovery_password"].encode(), calls, messages)
        return messages, "ok"
    except VaultError as e:
        return messages, e.error_class


def check_transcript(case):
    """A `transcript` case: every message, the outcome, K and the draws. Returns problems."""
    draws = {call: Draws(bytes.fromhex(case["randomness"][call])) for call in TRANSCRIPT_CALLS}
    messages, outcome = run_transcript(case, draws)
    problems = [f"{call}: {d.left()} random bytes left unused" for call, d in draws.items()
                if d.left()]
    want = case["messages"]
    for field in sorted(set(messages) | set(want)):
        got = messages[field].hex() if field in messages else None
        if got != want.get(field):
            problems.append(f"{field}: got {got}, expected {want.get(field)}")
    if outcome != case["outcome"]:
        problems.append(f"outcome {outcome}, expected {case['outcome']}")
    if outcome == "ok" and messages.get("recovered_key", b"").hex() != case["root_key"]:
        problems.append("the recovered key is not root_key")
    return problems


# ---------------------------------------------------------------------------------------
# The `state_machine` group

def fresh(count):
    """`count` fresh generators (the scripts fix no randomness)."""
    return [RandomDraws() for _ in range(count)]


class Script:
    """One script's vault and the client's held KE3. Each `op_` method is one step's `op`
    as the schema describes it; it returns None for `ok` or raises VaultError."""

    def __init__(self, parameters):
        limits = (parameters["min_limit"], parameters["max_limit"])
        self.vault = Vault(RandomDraws(), default_limit=parameters["default_limit"],
                           limits=limits)
        self.held = None

    def run(self, step):
        """One step: `ok` or the error class of the operation."""
        handler = getattr(self, "op_" + step["op"], None)
        if handler is None:
            return f"unknown op {step['op']!r}"
        user = step["user"].encode()
        password = (step.get("password") or "").encode()
        try:
            return handler(step, user, password) or "ok"
        except VaultError as e:
            return e.error_class

    def op_register(self, step, user, password):
        """A registration, with the step's limit if it names one."""
        register(self.vault, user, password, root_key_of(user), fresh(3), step.get("limit"))

    def op_recover(self, step, user, password):
        """The whole recovery; K must come back."""
        return check_key(user, recover(self.vault, user, password, fresh(3), {}))

    def op_recover_abandoned(self, step, user, password):
        """KE1 only: the client vanishes after KE2."""
        client = ClientLogin(password, RandomDraws())
        self.vault.recover_start(user, client.ke1, RandomDraws())

    def op_forged_ke3(self, step, user, password):
        """KE1, then a KE3 of random bytes."""
        client = ClientLogin(password, RandomDraws())
        session_id, _, _ = self.vault.recover_start(user, client.ke1, RandomDraws())
        self.vault.recover_finish(session_id, os.urandom(64), RandomDraws())

    def op_recover_hold(self, step, user, password):
        """A recovery up to the client's KE3, which is kept back."""
        self.held = (user, recover(self.vault, user, password, fresh(3), {}, send_ke3=False))

    def op_recover_release(self, step, user, password):
        """The held KE3 is sent; K must come back."""
        held_user, held = self.held
        return check_key(held_user, release_held(self.vault, held, RandomDraws(), {}))

    def op_change_password(self, step, user, password):
        """A recovery with `password`, then `new_password` registered on its session."""
        log = {}
        record_id, version, _ = recover(self.vault, user, password, fresh(3), log)
        register(self.vault, user, step["new_password"].encode(), root_key_of(user), fresh(3),
                 change=(log["session_id"], record_id, version))

    def op_change_password_unverified(self, step, user, password):
        """A password change naming a session id the vault never issued (so nothing was
        counted): the client has no record id or version, which the vault refuses before
        it would need them."""
        register(self.vault, user, password, root_key_of(user), fresh(3),
                 change=(os.urandom(16), bytes(16), 0))

    def op_delete(self, step, user, password):
        """The step has no password and may answer `no_record`: the admin token's
        `DELETE /v1/users/{user}` (spec §3.3)."""
        self.vault.delete_user(user)


def check_key(user, opened):
    """None when the release held K = SHA-256(user), else the problem."""
    return None if opened[2] == root_key_of(user) else "the recovered K is not sha256(user)"


def root_key_of(user):
    """The state-machine group's `root_key: sha256(user)`."""
    return hashlib.sha256(user).digest()


def check_script(parameters, case):
    """A `state_machine` script against a fresh in-memory vault. Returns problems."""
    if parameters["root_key"] != "sha256(user)":
        return [f"unknown root_key rule {parameters['root_key']!r}"]
    script, problems = Script(parameters), []
    for number, step in enumerate(case["steps"], start=1):
        outcome = script.run(step)
        state, left = script.vault.status(step["user"].encode())
        got = (outcome, state, left)
        want = (step["outcome"], step["state"], step["guesses_left"])
        if got != want:
            problems.append(f"step {number} ({step['op']}): outcome, state, guesses left "
                            f"{got}, expected {want}")
    return problems
