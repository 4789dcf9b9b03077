//! The randomness plumbing of vault.yaml's transcripts against RFC 9807 Appendix C: the
//! RFC's named random inputs, laid out as the byte streams spec/vault.md §3.5 says each
//! party draws, and fed through Coffer's generator adapter (`RngRef`) into opaque-ke with the
//! RFC's configuration (ristretto255-SHA512, 3DH, KSF Identity, context "OPAQUE-POC"),
//! reproduce every output of Real Test Vectors 1 and 2 (C.1.1, C.1.2). Coffer's suite
//! differs only in its KSF (Argon2id) and context, so this shows the byte layout recorded in
//! vault.yaml is the one the RFC's names correspond to.

use coffer::internal::randomness::{RngRef, VaultRng};
use opaque_ke::ksf::Identity;
use opaque_ke::{
    CipherSuite, ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, Identifiers, Ristretto255,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup, TripleDh,
};

struct RfcSuite;

impl CipherSuite for RfcSuite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2::Sha512>;
    type Ksf = Identity;
}

/// Serves exactly these bytes, then fails the test if more are drawn.
struct Exactly {
    bytes: Vec<u8>,
    at: usize,
}

impl rand_core::RngCore for Exactly {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.at + dest.len();
        assert!(
            end <= self.bytes.len(),
            "drew {end} bytes, only {} laid out",
            self.bytes.len()
        );
        dest.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Exactly {}

/// Runs `f` with a generator serving exactly `parts` in order, and checks all were drawn.
fn drawing<T>(parts: &[&str], f: impl FnOnce(&mut RngRef<'_>) -> T) -> T {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| hex::decode(p).unwrap()).collect();
    let mut rng = Exactly { bytes, at: 0 };
    let out = f(&mut RngRef(&mut rng as &mut dyn VaultRng));
    assert_eq!(rng.at, rng.bytes.len(), "not every laid-out byte was drawn");
    out
}

/// The 64 bytes a ristretto255 scalar is drawn as (wide reduction): the scalar, then zeros.
fn scalar_draw(scalar: &str) -> String {
    format!("{scalar}{}", "00".repeat(32))
}

struct Vector {
    client_identity: Option<&'static str>,
    server_identity: Option<&'static str>,
    registration_upload: &'static str,
    ke2: &'static str,
    ke3: &'static str,
    session_key: &'static str,
}

const OPRF_SEED: &str = "f433d0227b0b9dd54f7c4422b600e764e47fb503f1f9a0f0a47c6606b054a7fdc65347f1a08f277e22358bbabe26f823fca82c7848e9a75661f4ec5d5c1989ef";
const CREDENTIAL_IDENTIFIER: &str = "31323334";
const PASSWORD: &str = "436f7272656374486f72736542617474657279537461706c65";
const ENVELOPE_NONCE: &str = "ac13171b2f17bc2c74997f0fce1e1f35bec6b91fe2e12dbd323d23ba7a38dfec";
const MASKING_NONCE: &str = "38fe59af0df2c79f57b8780278f5ae47355fe1f817119041951c80f612fdfc6d";
const SERVER_PRIVATE_KEY: &str = "47451a85372f8b3537e249d7b54188091fb18edde78094b43e2ba42b5eb89f0d";
const SERVER_PUBLIC_KEY: &str = "b2fe7af9f48cc502d016729d2fe25cdd433f2c4bc904660b2a382c9b79df1a78";
const SERVER_NONCE: &str = "71cd9960ecef2fe0d0f7494986fa3d8b2bb01963537e60efb13981e138e3d4a1";
const CLIENT_NONCE: &str = "da7e07376d6d6f034cfa9bb537d11b8c6b4238c334333d1f0aebb380cae6a6cc";
const CLIENT_KEYSHARE_SEED: &str =
    "82850a697b42a505f5b68fcdafce8c31f0af2b581f063cf1091933541936304b";
const SERVER_KEYSHARE_SEED: &str =
    "05a4f54206eef1ba2f615bc0aa285cb22f26d1153b5b40a1e85ff80da12f982f";
const BLIND_REGISTRATION: &str = "76cfbfe758db884bebb33582331ba9f159720ca8784a2a070a265d9c2d6abe01";
const BLIND_LOGIN: &str = "6ecc102d2e7a7cf49617aad7bbe188556792d4acd60a1a8a8d2b65d4b0790308";
const CONTEXT: &[u8] = b"OPAQUE-POC";
const REGISTRATION_REQUEST: &str =
    "5059ff249eb1551b7ce4991f3336205bde44a105a032e747d21bf382e75f7a71";
const REGISTRATION_RESPONSE: &str = "7408a268083e03abc7097fc05b587834539065e86fb0c7b6342fcf5e01e5b019b2fe7af9f48cc502d016729d2fe25cdd433f2c4bc904660b2a382c9b79df1a78";
const KE1: &str = "c4dedb0ba6ed5d965d6f250fbe554cd45cba5dfcce3ce836e4aee778aa3cd44dda7e07376d6d6f034cfa9bb537d11b8c6b4238c334333d1f0aebb380cae6a6cc6e29bee50701498605b2c085d7b241ca15ba5c32027dd21ba420b94ce60da326";
const EXPORT_KEY: &str = "1ef15b4fa99e8a852412450ab78713aad30d21fa6966c9b8c9fb3262a970dc62950d4dd4ed62598229b1b72794fc0335199d9f7fcc6eaedde92cc04870e63f16";

/// RFC 9807 C.1.1 (no identities) and C.1.2 (client "alice", server "bob").
const VECTORS: [Vector; 2] = [
    Vector {
        client_identity: None,
        server_identity: None,
        registration_upload: "76a845464c68a5d2f7e442436bb1424953b17d3e2e289ccbaccafb57ac5c36751ac5844383c7708077dea41cbefe2fa15724f449e535dd7dd562e66f5ecfb95864eadddec9db5874959905117dad40a4524111849799281fefe3c51fa82785c5ac13171b2f17bc2c74997f0fce1e1f35bec6b91fe2e12dbd323d23ba7a38dfec634b0f5b96109c198a8027da51854c35bee90d1e1c781806d07d49b76de6a28b8d9e9b6c93b9f8b64d16dddd9c5bfb5fea48ee8fd2f75012a8b308605cdd8ba5",
        ke2: "7e308140890bcde30cbcea28b01ea1ecfbd077cff62c4def8efa075aabcbb47138fe59af0df2c79f57b8780278f5ae47355fe1f817119041951c80f612fdfc6dd6ec60bcdb26dc455ddf3e718f1020490c192d70dfc7e403981179d8073d1146a4f9aa1ced4e4cd984c657eb3b54ced3848326f70331953d91b02535af44d9fedc80188ca46743c52786e0382f95ad85c08f6afcd1ccfbff95e2bdeb015b166c6b20b92f832cc6df01e0b86a7efd92c1c804ff865781fa93f2f20b446c8371b671cd9960ecef2fe0d0f7494986fa3d8b2bb01963537e60efb13981e138e3d4a1c4f62198a9d6fa9170c42c3c71f1971b29eb1d5d0bd733e40816c91f7912cc4a660c48dae03e57aaa38f3d0cffcfc21852ebc8b405d15bd6744945ba1a93438a162b6111699d98a16bb55b7bdddfe0fc5608b23da246e7bd73b47369169c5c90",
        ke3: "4455df4f810ac31a6748835888564b536e6da5d9944dfea9e34defb9575fe5e2661ef61d2ae3929bcf57e53d464113d364365eb7d1a57b629707ca48da18e442",
        session_key: "42afde6f5aca0cfa5c163763fbad55e73a41db6b41bc87b8e7b62214a8eedc6731fa3cb857d657ab9b3764b89a84e91ebcb4785166fbb02cedfcbdfda215b96f",
    },
    Vector {
        client_identity: Some("alice"),
        server_identity: Some("bob"),
        registration_upload: "76a845464c68a5d2f7e442436bb1424953b17d3e2e289ccbaccafb57ac5c36751ac5844383c7708077dea41cbefe2fa15724f449e535dd7dd562e66f5ecfb95864eadddec9db5874959905117dad40a4524111849799281fefe3c51fa82785c5ac13171b2f17bc2c74997f0fce1e1f35bec6b91fe2e12dbd323d23ba7a38dfec1ac902dc5589e9a5f0de56ad685ea8486210ef41449cd4d8712828913c5d2b680b2b3af4a26c765cff329bfb66d38ecf1d6cfa9e7a73c222c6efe0d9520f7d7c",
        ke2: "7e308140890bcde30cbcea28b01ea1ecfbd077cff62c4def8efa075aabcbb47138fe59af0df2c79f57b8780278f5ae47355fe1f817119041951c80f612fdfc6dd6ec60bcdb26dc455ddf3e718f1020490c192d70dfc7e403981179d8073d1146a4f9aa1ced4e4cd984c657eb3b54ced3848326f70331953d91b02535af44d9fea502150b67fe36795dd8914f164e49f81c7688a38928372134b7dccd50e09f8fed9518b7b2f94835b3c4fe4c8475e7513f20eb97ff0568a39caee3fd6251876f71cd9960ecef2fe0d0f7494986fa3d8b2bb01963537e60efb13981e138e3d4a1c4f62198a9d6fa9170c42c3c71f1971b29eb1d5d0bd733e40816c91f7912cc4a292371e7809a9031743e943fb3b56f51de903552fc91fba4e7419029951c3970b2e2f0a9dea218d22e9e4e0000855bb6421aa3610d6fc0f4033a6517030d4341",
        ke3: "7a026de1d6126905736c3f6d92463a08d209833eb793e46d0f7f15b3e0f62c7643763c02bbc6b8d3d15b63250cae98171e9260f1ffa789750f534ac11a0176d5",
        session_key: "ae7951123ab5befc27e62e63f52cf472d6236cb386c968cc47b7e34f866aa4bc7638356a73cfce92becf39d6a7d32a1861f12130e824241fe6cab34fbd471a57",
    },
];

#[test]
fn the_randomness_layout_reproduces_rfc9807_appendix_c() {
    let password = hex::decode(PASSWORD).unwrap();
    let credential = hex::decode(CREDENTIAL_IDENTIFIER).unwrap();
    // The server setup as stored: OPRF seed, server private key, and a public key for fake
    // replies (not used by a real login).
    let setup_bytes = hex::decode(format!(
        "{OPRF_SEED}{SERVER_PRIVATE_KEY}{SERVER_PUBLIC_KEY}"
    ))
    .unwrap();
    let setup = ServerSetup::<RfcSuite>::deserialize(&setup_bytes).unwrap();
    for (n, v) in VECTORS.iter().enumerate() {
        let identifiers = Identifiers {
            client: v.client_identity.map(str::as_bytes),
            server: v.server_identity.map(str::as_bytes),
        };
        // Registration: the client draws the blind, then (finish) the envelope nonce.
        let start = drawing(&[&scalar_draw(BLIND_REGISTRATION)], |rng| {
            ClientRegistration::<RfcSuite>::start(rng, &password).unwrap()
        });
        assert_eq!(
            hex::encode(start.message.serialize()),
            REGISTRATION_REQUEST,
            "vector {n}"
        );
        let response =
            ServerRegistration::<RfcSuite>::start(&setup, start.message, &credential).unwrap();
        assert_eq!(
            hex::encode(response.message.serialize()),
            REGISTRATION_RESPONSE,
            "vector {n}"
        );
        let finish = drawing(&[ENVELOPE_NONCE], |rng| {
            start
                .state
                .finish(
                    rng,
                    &password,
                    response.message,
                    ClientRegistrationFinishParameters::new(identifiers, None),
                )
                .unwrap()
        });
        assert_eq!(
            hex::encode(finish.message.serialize()),
            v.registration_upload,
            "vector {n}"
        );
        assert_eq!(hex::encode(finish.export_key), EXPORT_KEY, "vector {n}");
        let file = ServerRegistration::<RfcSuite>::finish(finish.message);

        // Login: the client draws its blind, keyshare seed and nonce; the server a fake
        // record's masking key, the masking nonce, its keyshare seed and nonce
        // (spec/vault.md §3.5).
        let login = drawing(
            &[
                &scalar_draw(BLIND_LOGIN),
                CLIENT_KEYSHARE_SEED,
                CLIENT_NONCE,
            ],
            |rng| ClientLogin::<RfcSuite>::start(rng, &password).unwrap(),
        );
        assert_eq!(hex::encode(login.message.serialize()), KE1, "vector {n}");
        let server = drawing(
            // opaque-ke first draws a fake record's 64-byte masking key, in constant time,
            // whether or not the record is real; a real login does not use it.
            &[
                &"5a".repeat(64),
                MASKING_NONCE,
                SERVER_KEYSHARE_SEED,
                SERVER_NONCE,
            ],
            |rng| {
                ServerLogin::start(
                    rng,
                    &setup,
                    Some(file),
                    login.message,
                    &credential,
                    ServerLoginParameters {
                        context: Some(CONTEXT),
                        identifiers,
                    },
                )
                .unwrap()
            },
        );
        assert_eq!(hex::encode(server.message.serialize()), v.ke2, "vector {n}");
        let done = drawing(&[], |rng| {
            login
                .state
                .finish(
                    rng,
                    &password,
                    server.message,
                    ClientLoginFinishParameters::new(Some(CONTEXT), identifiers, None),
                )
                .unwrap()
        });
        assert_eq!(hex::encode(done.message.serialize()), v.ke3, "vector {n}");
        assert_eq!(hex::encode(done.session_key), v.session_key, "vector {n}");
        assert_eq!(hex::encode(done.export_key), EXPORT_KEY, "vector {n}");
        let ke3 =
            CredentialFinalization::<RfcSuite>::deserialize(&done.message.serialize()).unwrap();
        let server_done = server
            .state
            .finish(
                ke3,
                ServerLoginParameters {
                    context: Some(CONTEXT),
                    identifiers,
                },
            )
            .unwrap();
        assert_eq!(
            hex::encode(server_done.session_key),
            v.session_key,
            "vector {n}"
        );
    }
}
