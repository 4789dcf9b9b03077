"""An independent, clean-room reader of vectors/realms.yaml (spec/realms.md), used by
check_vectors.py: ristretto255 (RFC 9496), expand_message_xmd (RFC 9380), the threshold
OPRF with DLEQ proofs, Shamir sharing, registration, both recovery phases, fake answers and
a model of the per-realm guess counts, written from the spec's text alone (no Rust code).

Needs only the standard library and `cryptography` (HKDF, AES-GCM, Argon2id).
"""
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


# ---------------------------------------------------------------------------------------
# The field GF(2^255 - 19) and ristretto255 (RFC 9496 §4)

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493  # the group order (spec §1: q)

# RFC 9496 §4.1 constants.
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
SQRT_AD_MINUS_ONE = 25063068953384623474111414158702152701244531502492656460079210482610430750235
INVSQRT_A_MINUS_D = 54469307008909316920995813868745141605393597292927456921205312896311721017578
ONE_MINUS_D_SQ = 1159843021668779879193775521855586647937357759715417654439879720876111806838
D_MINUS_ONE_SQ = 40440834346308536858101042469323190826248399146238708352240133220865137265952
D2 = 2 * D % P


class Malformed(Exception):
    """A received element or scalar that does not decode (spec §1: `malformed`)."""


def is_negative(x):
    """RFC 9496 §4.2: IS_NEGATIVE, the low bit of the canonical encoding."""
    return (x % P) & 1


def ct_abs(x):
    """RFC 9496 §4.2: CT_ABS (not constant time here: this is a checker)."""
    x %= P
    return (-x) % P if is_negative(x) else x


def sqrt_ratio_m1(u, v):
    """RFC 9496 §4.2: SQRT_RATIO_M1(u, v) -> (was_square, the non-negative root)."""
    u, v = u % P, v % P
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    r = u * v3 % P * pow(u * v7 % P, (P - 5) // 8, P) % P
    check = v * r % P * r % P
    correct_sign = check == u
    flipped_sign = check == (-u) % P
    flipped_sign_i = check == (-u) * SQRT_M1 % P
    if flipped_sign or flipped_sign_i:
        r = r * SQRT_M1 % P
    return correct_sign or flipped_sign, ct_abs(r)


class Element:
    """A ristretto255 element in extended coordinates (X : Y : Z : T) of edwards25519."""

    __slots__ = ("x", "y", "z", "t")

    def __init__(self, x, y, z, t):
        self.x, self.y, self.z, self.t = x, y, z, t

    def __add__(self, other):
        """Addition on edwards25519 with a = -1 (the complete formula add-2008-hwcd-3)."""
        a = (self.y - self.x) * (other.y - other.x) % P
        b = (self.y + self.x) * (other.y + other.x) % P
        c = self.t * D2 % P * other.t % P
        d = 2 * self.z * other.z % P
        e, f, g, h = b - a, d - c, d + c, b + a
        return Element(e * f % P, g * h % P, f * g % P, e * h % P)

    def __neg__(self):
        return Element((-self.x) % P, self.y, self.z, (-self.t) % P)

    def __sub__(self, other):
        return self + (-other)

    def __eq__(self, other):
        """RFC 9496 §4.5: equality of ristretto255 elements (not of representatives)."""
        return (self.x * other.y - self.y * other.x) % P == 0 or (self.y * other.y - self.x * other.x) % P == 0

    def __hash__(self):
        return hash(self.encode())

    def double(self):
        return self + self

    def __rmul__(self, scalar):
        """Scalar multiplication by a 4-bit fixed window (left to right)."""
        scalar %= Q
        table = [IDENTITY, self]
        for _ in range(14):
            table.append(table[-1] + self)
        acc = IDENTITY
        for shift in range(252, -1, -4):
            acc = acc.double().double().double().double()
            nibble = (scalar >> shift) & 15
            if nibble:
                acc = acc + table[nibble]
        return acc

    def encode(self):
        """RFC 9496 §4.3.2: the canonical 32-byte encoding."""
        x0, y0, z0, t0 = self.x, self.y, self.z, self.t
        u1 = (z0 + y0) * (z0 - y0) % P
        u2 = x0 * y0 % P
        _, invsqrt = sqrt_ratio_m1(1, u1 * u2 % P * u2 % P)
        den1 = invsqrt * u1 % P
        den2 = invsqrt * u2 % P
        z_inv = den1 * den2 % P * t0 % P
        rotate = is_negative(t0 * z_inv)
        if rotate:
            x, y, den_inv = y0 * SQRT_M1 % P, x0 * SQRT_M1 % P, den1 * INVSQRT_A_MINUS_D % P
        else:
            x, y, den_inv = x0, y0, den2
        if is_negative(x * z_inv):
            y = (-y) % P
        return ct_abs(den_inv * (z0 - y)).to_bytes(32, "little")


IDENTITY = Element(0, 1, 1, 0)


def decode_element(data, allow_identity=False):
    """RFC 9496 §4.3.1, and spec §1: refuse non-canonical encodings and, wherever an element
    is received, the identity (`malformed`)."""
    if len(data) != 32:
        raise Malformed("element length")
    s = int.from_bytes(data, "little")
    if s >= P or is_negative(s):
        raise Malformed("non-canonical element")
    ss = s * s % P
    u1, u2 = (1 - ss) % P, (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 % P * u1) - u2_sqr) % P
    was_square, invsqrt = sqrt_ratio_m1(1, v * u2_sqr % P)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x % P * v % P
    x = ct_abs(2 * s * den_x)
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or is_negative(t) or y == 0:
        raise Malformed("not a ristretto255 element")
    element = Element(x, y, 1, t)
    if not allow_identity and element == IDENTITY:
        raise Malformed("the identity")
    return element


BASE = decode_element(bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"))


def ristretto_map(t):
    """RFC 9496 §4.3.4: MAP(t), the Elligator-based map of one field element."""
    r = SQRT_M1 * t % P * t % P
    u = (r + 1) * ONE_MINUS_D_SQ % P
    v = (-1 - r * D) * (r + D) % P
    was_square, s = sqrt_ratio_m1(u, v)
    if not was_square:
        s = (-ct_abs(s * t)) % P
        c = r
    else:
        c = P - 1
    n = (c * (r - 1) % P * D_MINUS_ONE_SQ - v) % P
    w0 = 2 * s * v % P
    w1 = n * SQRT_AD_MINUS_ONE % P
    w2 = (1 - s * s) % P
    w3 = (1 + s * s) % P
    return Element(w0 * w3 % P, w2 * w1 % P, w1 * w3 % P, w0 * w2 % P)


def from_uniform_bytes(data):
    """RFC 9496 §4.3.4: ristretto255_from_uniform_bytes of 64 bytes."""
    assert len(data) == 64
    mask = (1 << 255) - 1
    t1 = int.from_bytes(data[:32], "little") & mask
    t2 = int.from_bytes(data[32:], "little") & mask
    return ristretto_map(t1) + ristretto_map(t2)


# ---------------------------------------------------------------------------------------
# Scalars (spec §1)

def encode_scalar(k):
    """spec §1: a scalar mod q as 32 bytes little-endian (canonical)."""
    return (k % Q).to_bytes(32, "little")


def decode_scalar(data):
    """spec §1, §5: a received scalar; non-canonical encodings are refused."""
    if len(data) != 32:
        raise Malformed("scalar length")
    k = int.from_bytes(data, "little")
    if k >= Q:
        raise Malformed("non-canonical scalar")
    return k


def invert(k):
    """The inverse mod q (Fermat)."""
    return pow(k, Q - 2, Q)


# ---------------------------------------------------------------------------------------
# Hashes (spec §1; RFC 9380 §5.3.1)

def expand_message_xmd_sha512(msg, dst, length):
    """RFC 9380 §5.3.1: expand_message_xmd with SHA-512 (b = 64, s = 128 bytes)."""
    if isinstance(dst, str):
        dst = dst.encode()
    ell = -(-length // 64)
    assert ell <= 255 and length <= 65535 and len(dst) <= 255
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(128) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    bi = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = bi
    for i in range(2, ell + 1):
        bi = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, bi)) + bytes([i]) + dst_prime).digest()
        out += bi
    return out[:length]


def hash_to_group(x):
    """spec §1: HashToGroup(x) = from_uniform_bytes(expand_message_xmd_SHA512(x,
    "coffer-realms-v1 HashToGroup", 64))."""
    return from_uniform_bytes(expand_message_xmd_sha512(x, "coffer-realms-v1 HashToGroup", 64))


def hash_to_scalar(x):
    """spec §1: HashToScalar(x): expand_message_xmd_SHA512(x, "coffer-realms-v1 HashToScalar",
    64) read little-endian, reduced mod q."""
    return int.from_bytes(expand_message_xmd_sha512(x, "coffer-realms-v1 HashToScalar", 64), "little") % Q


def lp(x):
    """spec §1: lp(x) = u16 len(x) ‖ x."""
    return len(x).to_bytes(2, "big") + x


def hmac_sha256(key, msg):
    """spec §1: HMAC is HMAC-SHA-256."""
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf(salt, ikm, info, length=32):
    """spec §1: HKDF-SHA-256 (RFC 5869), extract then expand."""
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def aead_seal(key, nonce, plaintext, aad):
    """spec §1: AES-256-GCM written nonce ‖ ciphertext ‖ tag."""
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key, sealed, aad):
    """spec §1: opens nonce ‖ ciphertext ‖ tag, or returns None."""
    if len(sealed) < 28:
        return None
    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
    except InvalidTag:
        return None


# ---------------------------------------------------------------------------------------
# Fixed randomness (spec §13)

class Draws:
    """One party's recorded random bytes, handed out in order (spec §13)."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"randomness exhausted: {n} bytes wanted at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self):
        """spec §13: a scalar is drawn as 64 bytes read little-endian and reduced mod q,
        drawn again if zero."""
        while True:
            k = int.from_bytes(self.take(64), "little") % Q
            if k:
                return k

    def left(self):
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------------------
# Shamir sharing over the scalar field (spec §3.1 steps 3-4, §4 step 4)

def polynomial_at(coefficients, x):
    """f(x) = c_0 + c_1·x + … mod q (Horner)."""
    out = 0
    for c in reversed(coefficients):
        out = (out * x + c) % Q
    return out


def lagrange_at_zero(indices):
    """spec §4 step 4: λ_i = Π_{j∈T, j≠i} j / (j − i) mod q, for each i of T."""
    out = {}
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % Q
                den = den * (j - i) % Q
        out[i] = num * invert(den) % Q
    return out


# ---------------------------------------------------------------------------------------
# The key-stretching function (spec §3.1 step 2; spec/vault.md §2)

def parse_ksf(text):
    """spec/vault.md §2: `argon2id:m=KIB,t=PASSES,p=LANES` -> (m, t, p), within its bounds."""
    name, _, rest = text.partition(":")
    fields_ = dict(part.split("=", 1) for part in rest.split(","))
    if name != "argon2id" or set(fields_) != {"m", "t", "p"} or list(fields_) != ["m", "t", "p"]:
        raise ValueError(f"KSF text {text!r}")
    m, t, p = int(fields_["m"]), int(fields_["t"]), int(fields_["p"])
    if not (8 * p <= m <= 4 * 1024 * 1024 and 1 <= t <= 100 and 1 <= p <= 16):
        raise ValueError(f"KSF parameters out of bounds: {text!r}")
    return m, t, p


def realm_salt(user):
    """spec §3.1 step 2: salt = the first 16 bytes of SHA-256("coffer-realms-v1 salt" ‖ lp(user))."""
    return hashlib.sha256(b"coffer-realms-v1 salt" + lp(user.encode())).digest()[:16]


_ACCESS_CACHE = {}


def access_key(user, password, ksf):
    """spec §3.1 step 2: access = Argon2id(password, salt, parameters, 32 bytes) (version 0x13)."""
    key = (user, password, ksf)
    if key not in _ACCESS_CACHE:
        m, t, p = parse_ksf(ksf)
        kdf = Argon2id(salt=realm_salt(user), length=32, iterations=t, lanes=p, memory_cost=m)
        _ACCESS_CACHE[key] = kdf.derive(password.encode())
    return _ACCESS_CACHE[key]


# ---------------------------------------------------------------------------------------
# The OPRF output and the keys derived from it (spec §3.1 steps 5-7)

def oprf_output(access, evaluated):
    """spec §3.1 step 5, §4 step 4: y = SHA-512(lp(access) ‖ lp(enc(N)) ‖ "Finalize")."""
    return hashlib.sha512(lp(access) + lp(evaluated.encode()) + b"Finalize").digest()


def unlock_key_of(reg_id, y):
    """spec §3.1 step 6: unlock_key = HKDF(salt = reg_id, ikm = y, info = "coffer-realms-v1 unlock")."""
    return hkdf(reg_id, y, b"coffer-realms-v1 unlock")


def check_of(unlock_key):
    """spec §3.1 step 6: check = HMAC(unlock_key, "coffer-realms-v1 check")."""
    return hmac_sha256(unlock_key, b"coffer-realms-v1 check")


def tag_of(unlock_key, index, realm_id):
    """spec §3.1 step 6: tag_i = HMAC(unlock_key, "coffer-realms-v1 tag" ‖ u8 i ‖ lp(realm_id_i))."""
    return hmac_sha256(unlock_key, b"coffer-realms-v1 tag" + bytes([index]) + lp(realm_id.encode()))


def wrap_key_of(reg_id, y, s):
    """spec §3.1 step 7: wrap_key = HKDF(salt = reg_id, ikm = y ‖ enc(s), info = "coffer-realms-v1 wrap")."""
    return hkdf(reg_id, y + encode_scalar(s), b"coffer-realms-v1 wrap")


def wrap_aad(reg_id):
    """spec §3.1 step 7: the associated data of `wrapped`."""
    return b"coffer-realms-v1 K" + reg_id


# ---------------------------------------------------------------------------------------
# The public part (spec §3.1 step 8)

def build_public(reg_id, t, n, ksf, limit, key_publics, secret_publics, check, wrapped):
    """spec §3.1 step 8: reg_id ‖ u8 t ‖ u8 n ‖ lp(ksf) ‖ u32 L ‖ P_1…P_n ‖ S_1…S_n ‖ check ‖ wrapped."""
    out = reg_id + bytes([t, n]) + lp(ksf.encode()) + limit.to_bytes(4, "big")
    out += b"".join(e.encode() for e in key_publics) + b"".join(e.encode() for e in secret_publics)
    return out + check + wrapped


def parse_public(data):
    """spec §3.1 step 8, read back (§3.2: a public part that does not parse is `malformed`).
    `wrapped` is everything after `check`: nonce (12) ‖ ciphertext of K (32) ‖ tag (16)."""
    try:
        reg_id, t, n = data[:16], data[16], data[17]
        ksf_len = int.from_bytes(data[18:20], "big")
        pos = 20 + ksf_len
        ksf = data[20:pos].decode("ascii")
        limit = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    except (IndexError, UnicodeDecodeError) as e:
        raise Malformed("public part") from e
    if len(reg_id) != 16 or not 1 <= t <= n or len(data) != pos + 64 * n + 32 + 60:
        raise Malformed("public part")
    key_publics = [decode_element(data[pos + 32 * i:pos + 32 * i + 32]) for i in range(n)]
    pos += 32 * n
    secret_publics = [decode_element(data[pos + 32 * i:pos + 32 * i + 32]) for i in range(n)]
    pos += 32 * n
    return {
        "reg_id": reg_id, "t": t, "n": n, "ksf": ksf, "limit": limit, "key_publics": key_publics,
        "secret_publics": secret_publics, "check": data[pos:pos + 32], "wrapped": data[pos + 32:],
    }


def commitment_of(public):
    """spec §3.1 step 8: commitment = SHA-256("coffer-realms-v1 commitment" ‖ public)."""
    return hashlib.sha256(b"coffer-realms-v1 commitment" + public).digest()


# ---------------------------------------------------------------------------------------
# DLEQ (spec §5)

def dleq_challenge(p_pub, m, z, a1, a2):
    """spec §5: c = HashToScalar("coffer-realms-v1 DLEQ" ‖ B ‖ P ‖ M ‖ Z ‖ A1 ‖ A2), points encoded."""
    return hash_to_scalar(b"coffer-realms-v1 DLEQ" + b"".join(e.encode() for e in (BASE, p_pub, m, z, a1, a2)))


def dleq_prove(k, p_pub, m, z, rho):
    """spec §5: Prove(k, B, P, M, Z) with the nonce ρ: π = enc(c) ‖ enc(σ), σ = ρ − c·k."""
    c = dleq_challenge(p_pub, m, z, rho * BASE, rho * m)
    return encode_scalar(c) + encode_scalar(rho - c * k)


def dleq_verify(p_pub, m, z, proof):
    """spec §5: Verify(B, P, M, Z, π): A1 = σ·B + c·P, A2 = σ·M + c·Z, recompute c.
    Non-canonical scalars are refused (False)."""
    if len(proof) != 64:
        return False
    try:
        c, sigma = decode_scalar(proof[:32]), decode_scalar(proof[32:])
    except Malformed:
        return False
    a1 = sigma * BASE + c * p_pub
    a2 = sigma * m + c * z
    return dleq_challenge(p_pub, m, z, a1, a2) == c


# ---------------------------------------------------------------------------------------
# Registration, client side (spec §3.1, draws in the order of §13)

def register(user, password, root_key, realm_ids, t, limit, ksf, draws):
    """spec §3.1: returns (public, commitment, shares) where shares[realm_id] holds index,
    k_i, s_i and tag_i. `draws` is the client's randomness (spec §13: reg_id, k, s, the
    t − 1 higher coefficients of k's polynomial, a_1 first, then s's, then the nonce)."""
    n = len(realm_ids)
    if not 1 <= t <= n <= 64 or not 1 <= limit <= 1000:
        raise ValueError("unsupported")
    reg_id = draws.take(16)
    k, s = draws.scalar(), draws.scalar()
    k_poly = [k] + [draws.scalar() for _ in range(t - 1)]
    s_poly = [s] + [draws.scalar() for _ in range(t - 1)]
    nonce = draws.take(12)
    access = access_key(user, password, ksf)
    y = oprf_output(access, k * hash_to_group(access))
    unlock_key = unlock_key_of(reg_id, y)
    wrapped = aead_seal(wrap_key_of(reg_id, y, s), nonce, root_key, wrap_aad(reg_id))
    key_shares = [polynomial_at(k_poly, i) for i in range(1, n + 1)]
    secret_shares = [polynomial_at(s_poly, i) for i in range(1, n + 1)]
    public = build_public(reg_id, t, n, ksf, limit, [ki * BASE for ki in key_shares],
                          [si * BASE for si in secret_shares], check_of(unlock_key), wrapped)
    shares = {
        realm_id: {"index": i, "key_share": key_shares[i - 1], "secret_share": secret_shares[i - 1],
                   "tag": tag_of(unlock_key, i, realm_id)}
        for i, realm_id in enumerate(realm_ids, start=1)
    }
    return public, commitment_of(public), shares


# ---------------------------------------------------------------------------------------
# A realm (spec §3.2, §4 step 2, §6.2, §6.4), in memory

class RealmError(Exception):
    """A realm's refusal, with its error class (spec §11)."""

    def __init__(self, error_class, why=""):
        super().__init__(f"{error_class}: {why}")
        self.error_class = error_class


def fake_registration(fake_seed, user, ksf, limit):
    """spec §6.4: the fake 1-of-1 registration of `user`, as (key share k, public part)."""
    seed = hmac_sha256(fake_seed, b"coffer-realms-v1 fake" + lp(user.encode()))
    k = hash_to_scalar(seed + b"k")
    s = hash_to_scalar(seed + b"s")
    reg_id = expand_message_xmd_sha512(seed, "reg_id", 16)
    check = expand_message_xmd_sha512(seed, "check", 32)
    wrapped = expand_message_xmd_sha512(seed, "wrapped", 60)
    return k, build_public(reg_id, 1, 1, ksf, limit, [k * BASE], [s * BASE], check, wrapped)


def release_key(tag, session):
    """spec §6.2: HKDF(salt = session, ikm = tag_i, info = "coffer-realms-v1 release")."""
    return hkdf(session, tag, b"coffer-realms-v1 release")


def release_aad(session):
    return b"coffer-realms-v1 release" + session


def unlock_proof(tag, session):
    """spec §6.1: proof_i = HMAC(tag_i, "coffer-realms-v1 unlock" ‖ session_i)."""
    return hmac_sha256(tag, b"coffer-realms-v1 unlock" + session)


class Realm:
    """One realm's state and behaviour as the spec states them; `draws` is its randomness
    (spec §13: the fake seed at its first start, a grant per registration, ρ and the session
    in phase 1, the release nonce in phase 2)."""

    def __init__(self, realm_id, draws, ksf, fake_limit):
        self.realm_id, self.draws, self.ksf, self.fake_limit = realm_id, draws, ksf, fake_limit
        self.fake_seed = draws.take(32)
        self.records = {}
        self.sessions = {}

    def register(self, user, realm_id, index, public, key_share, secret_share, tag):
        """spec §3.2; returns the grant."""
        if realm_id != self.realm_id:
            raise RealmError("malformed", "another realm's share")
        parsed = parse_public(public)
        if not 1 <= index <= parsed["n"]:
            raise RealmError("malformed", "index")
        k, s = decode_scalar(key_share), decode_scalar(secret_share)
        if k * BASE != parsed["key_publics"][index - 1] or s * BASE != parsed["secret_publics"][index - 1]:
            raise RealmError("malformed", "a share that does not match its public share")
        grant = self.draws.take(16)
        self.records[user] = {
            "public": public, "parsed": parsed, "index": index, "k": k, "s": s, "tag": tag,
            "guesses": 0, "state": "active",
        }
        return grant

    def state(self, user):
        record = self.records.get(user)
        return ("none", 0) if record is None else (record["state"], record["guesses"])

    def _destroy(self, record):
        record.update(state="destroyed", k=None, s=None, tag=None)

    def evaluate(self, user, blinded):
        """spec §4 step 2: count (or destroy at the limit) first, then answer."""
        m = decode_element(blinded)
        record = self.records.get(user)
        if record is not None and record["state"] == "active":
            if record["guesses"] < record["parsed"]["limit"]:
                record["guesses"] += 1
            else:
                self._destroy(record)
        if record is None or record["state"] != "active":
            k, public = fake_registration(self.fake_seed, user, self.ksf, self.fake_limit)
            index, p_pub, keep = 1, k * BASE, False
        else:
            k, public, index = record["k"], record["public"], record["index"]
            p_pub, keep = record["parsed"]["key_publics"][index - 1], True
        z = k * m
        proof = dleq_prove(k, p_pub, m, z, self.draws.scalar())
        session = self.draws.take(16)
        if keep:
            self.sessions[session] = (user, record["parsed"]["reg_id"])
        return {"public": public, "index": index, "evaluation": z.encode(), "proof": proof, "session": session}

    def unlock(self, session, proof):
        """spec §6.2: a session is used once; the proof resets the count and releases s_i."""
        taken = self.sessions.pop(session, None)
        if taken is None:
            raise RealmError("wrong_password", "unknown session")
        user, reg_id = taken
        record = self.records.get(user)
        if record is None or record["state"] != "active" or record["parsed"]["reg_id"] != reg_id:
            raise RealmError("locked", "destroyed or replaced since phase 1")
        if not hmac.compare_digest(proof, unlock_proof(record["tag"], session)):
            if record["guesses"] >= record["parsed"]["limit"]:
                self._destroy(record)
            raise RealmError("wrong_password", "proof")
        record["guesses"] = 0
        nonce = self.draws.take(12)
        return aead_seal(release_key(record["tag"], session), nonce, encode_scalar(record["s"]), release_aad(session))


# ---------------------------------------------------------------------------------------
# Recovery, client side (spec §4, §6.1, §6.3)

class Failure(Exception):
    """A recovery that ended without K: its class and the realms it named."""

    def __init__(self, error_class, named):
        super().__init__(error_class)
        self.error_class, self.named = error_class, named


def recover(user, password, realm_ids, t, ksf, realms, answering, tamper, r_draws, log):
    """spec §4 and §6 across the in-memory `realms`, only `answering` taking part. `tamper`
    (realm, field, bytes) replaces one field the client receives. Every message goes into
    `log`. Returns (K, named) or raises Failure."""
    n = len(realm_ids)
    access = access_key(user, password, ksf)
    r = r_draws.scalar()
    m_point = r * hash_to_group(access)
    log["blinded"] = m_point.encode()
    named = []
    groups = {}
    answered = 0
    for position, realm_id in enumerate(realm_ids, start=1):
        if realm_id not in answering:
            continue
        answer = realms[realm_id].evaluate(user, log["blinded"])
        log["answers"][realm_id] = dict(answer)
        if tamper and tamper[0] == realm_id and tamper[1] in answer:
            answer[tamper[1]] = tamper[2]
        answered += 1
        try:
            public = parse_public(answer["public"])
        except Malformed:
            named.append(realm_id)
            continue
        if public["t"] != t or public["n"] != n:
            continue  # a fake or another registration's shape (§4 step 3, §6.4)
        if public["ksf"] != ksf:
            named.append(realm_id)
            continue
        group = groups.setdefault(commitment_of(answer["public"]), (public, []))
        index = answer["index"]
        if index != position or any(v["index"] == index for v in group[1]):
            named.append(realm_id)
            continue
        try:
            z = decode_element(answer["evaluation"])
        except Malformed:
            named.append(realm_id)
            continue
        if not dleq_verify(public["key_publics"][index - 1], m_point, z, answer["proof"]):
            named.append(realm_id)
            continue
        group[1].append({"realm": realm_id, "index": index, "z": z, "session": answer["session"]})
    usable = [g for g in groups.values() if len(g[1]) >= g[0]["t"]]
    if not usable:
        if answered < t:
            raise Failure("io", named)
        largest = max((len(g[1]) for g in groups.values()), default=0)
        raise Failure("no_record" if largest == 0 and not named else "locked", named)
    public, verified = max(usable, key=lambda g: (len(g[1]), g[0]["reg_id"]))
    chosen = verified[:t]
    lambdas = lagrange_at_zero([v["index"] for v in chosen])
    combined = IDENTITY
    for v in chosen:
        combined = combined + lambdas[v["index"]] * v["z"]
    y = oprf_output(access, invert(r) * combined)
    unlock_key = unlock_key_of(public["reg_id"], y)
    if not hmac.compare_digest(check_of(unlock_key), public["check"]):
        raise Failure("wrong_password", named)
    shares = []
    for v in verified:
        tag = tag_of(unlock_key, v["index"], v["realm"])
        proof = unlock_proof(tag, v["session"])
        try:
            release = realms[v["realm"]].unlock(v["session"], proof)
        except RealmError:
            named.append(v["realm"])
            continue
        log["unlocks"][v["realm"]] = {"proof": proof, "release": release}
        if tamper and tamper[0] == v["realm"] and tamper[1] == "release":
            release = tamper[2]
        plain = aead_open(release_key(tag, v["session"]), release, release_aad(v["session"]))
        try:
            share = decode_scalar(plain) if plain is not None else None
        except Malformed:
            share = None
        if share is None or share * BASE != public["secret_publics"][v["index"] - 1]:
            named.append(v["realm"])
            continue
        shares.append((v["index"], share))
    if len(shares) < t:
        raise Failure("locked", named)
    chosen = shares[:t]
    lambdas = lagrange_at_zero([i for i, _ in chosen])
    s = sum(lambdas[i] * share for i, share in chosen) % Q
    root_key = aead_open(wrap_key_of(public["reg_id"], y, s), public["wrapped"], wrap_aad(public["reg_id"]))
    if root_key is None:
        raise Failure("locked", named)
    return root_key, named


# ---------------------------------------------------------------------------------------
# The groups of realms.yaml

class RandomDraws(Draws):
    """Fresh randomness, for the guess-count scripts (which fix none)."""

    def __init__(self):
        super().__init__(b"")

    def take(self, n):
        import os
        return os.urandom(n)


def _hex(data):
    return data.hex() if isinstance(data, (bytes, bytearray)) else data


def check_hash(case):
    """A `hash` case: returns a list of problems."""
    data = bytes.fromhex(case["input"])
    if case["function"] == "hash_to_group":
        got = hash_to_group(data).encode()
    elif case["function"] == "hash_to_scalar":
        got = encode_scalar(hash_to_scalar(data))
    else:
        return [f"unknown function {case['function']!r}"]
    return [] if got.hex() == case["output"] else [f"output {got.hex()}"]


def check_transcript(case):
    """A `transcript` case: registration and recovery with the recorded randomness; every
    message, the realms named, K and the outcome compared. Returns a list of problems."""
    problems = []

    def expect(what, got, want):
        if _hex(got) != want:
            problems.append(f"{what}: got {_hex(got)}, expected {want}")

    randomness = case["randomness"]
    realm_ids, t, ksf, user = case["realm_ids"], case["threshold"], case["ksf"], case["user"]
    realms = {
        rid: Realm(rid, Draws(bytes.fromhex(randomness["realms"][rid])), ksf, case["limit"])
        for rid in realm_ids
    }
    if case["password"] is not None:
        client = Draws(bytes.fromhex(randomness["client_registration"]))
        public, commitment, shares = register(
            user, case["password"], bytes.fromhex(case["root_key"]), realm_ids, t, case["limit"], ksf, client)
        expect("public", public, case["public"])
        expect("commitment", commitment, case["commitment"])
        if client.left():
            problems.append(f"client registration left {client.left()} random bytes unused")
        for rid in realm_ids:
            share, want = shares[rid], case["shares"].get(rid, {})
            grant = realms[rid].register(user, rid, share["index"], public, encode_scalar(share["key_share"]),
                                         encode_scalar(share["secret_share"]), share["tag"])
            expect(f"{rid} index", str(share["index"]), str(want.get("index")))
            expect(f"{rid} key_share", encode_scalar(share["key_share"]), want.get("key_share"))
            expect(f"{rid} secret_share", encode_scalar(share["secret_share"]), want.get("secret_share"))
            expect(f"{rid} tag", share["tag"], want.get("tag"))
            expect(f"{rid} grant", grant, want.get("grant"))
    tamper = None
    if case["tamper"]:
        tamper = (case["tamper"]["realm"], case["tamper"]["field"], bytes.fromhex(case["tamper"]["value"]))
    log = {"answers": {}, "unlocks": {}}
    r_draws = Draws(bytes.fromhex(randomness["client_recovery"]))
    try:
        root_key, named = recover(user, case["recovery_password"], realm_ids, t, ksf, realms,
                                  set(case["answering"]), tamper, r_draws, log)
        outcome = "ok"
    except Failure as failure:
        root_key, named, outcome = b"", failure.named, failure.error_class
    expect("blinded", log.get("blinded", b""), case["blinded"])
    if set(log["answers"]) != set(case["answers"]):
        problems.append(f"answers from {sorted(log['answers'])}, expected {sorted(case['answers'])}")
    for rid, answer in log["answers"].items():
        for field, value in answer.items():
            want = case["answers"].get(rid, {}).get(field)
            expect(f"{rid} {field}", str(value) if field == "index" else value,
                   str(want) if field == "index" else want)
    if set(log["unlocks"]) != set(case["unlocks"]):
        problems.append(f"unlocks at {sorted(log['unlocks'])}, expected {sorted(case['unlocks'])}")
    for rid, unlock in log["unlocks"].items():
        for field, value in unlock.items():
            expect(f"{rid} unlock {field}", value, case["unlocks"].get(rid, {}).get(field))
    expect("named", ",".join(sorted(named)), ",".join(sorted(filter(None, case["named"].split(",")))))
    expect("recovered_key", root_key, case["recovered_key"])
    expect("outcome", outcome, case["outcome"])
    if r_draws.left():
        problems.append(f"client recovery left {r_draws.left()} random bytes unused")
    for rid, realm in realms.items():
        if realm.draws.left():
            problems.append(f"{rid} left {realm.draws.left()} random bytes unused")
    return problems


def check_guess_counts(parameters, case, ksf="argon2id:m=256,t=1,p=1"):
    """A `guess_counts` script against fresh in-memory realms; returns a list of problems."""
    realm_ids, t, limit = parameters["realm_ids"], parameters["threshold"], parameters["limit"]
    user, password = parameters["user"], parameters["password"]
    root_key = hashlib.sha256(user.encode()).digest()
    realms = {rid: Realm(rid, RandomDraws(), ksf, 10) for rid in realm_ids}
    problems = []
    for number, step in enumerate(case["steps"], start=1):
        answering = set(step["realms"] or realm_ids)
        guess = step["password"] if step["password"] is not None else password
        if step["op"] == "register":
            public, _, shares = register(user, password, root_key, realm_ids, t, limit, ksf, RandomDraws())
            for rid in answering:
                share = shares[rid]
                realms[rid].register(user, rid, share["index"], public, encode_scalar(share["key_share"]),
                                     encode_scalar(share["secret_share"]), share["tag"])
            outcome = "ok"
        elif step["op"] == "evaluate":
            blinded = (RandomDraws().scalar() * hash_to_group(access_key(user, guess, ksf))).encode()
            for rid in realm_ids:
                if rid in answering:
                    realms[rid].evaluate(user, blinded)
            outcome = "ok"
        elif step["op"] == "recover":
            log = {"answers": {}, "unlocks": {}}
            try:
                got, _ = recover(user, guess, realm_ids, t, ksf, realms, answering, None, RandomDraws(), log)
                outcome = "ok" if got == root_key else "wrong key"
            except Failure as failure:
                outcome = failure.error_class
        else:
            problems.append(f"step {number}: unknown op {step['op']!r}")
            continue
        if outcome != step["outcome"]:
            problems.append(f"step {number} ({step['op']}): outcome {outcome}, expected {step['outcome']}")
        for rid in realm_ids:
            state, guesses = realms[rid].state(user)
            if state != step["states"][rid] or guesses != step["guesses"][rid]:
                problems.append(f"step {number}: {rid} is {state} with {guesses} guesses, expected "
                                f"{step['states'][rid]} with {step['guesses'][rid]}")
    return problems
