//! The vault state machine end to end, in process: real SQLite on disk, the software HSM,
//! real OPAQUE. (The HTTP layer and its tests come with the vault server.)

use coffer::hsm::SoftHsm;
use coffer::key::RootKey;
use coffer::store::{RecordState, SqliteStore, Store};
use coffer::vault::{
    KsfParams, RecoveryClient, RegistrationClient, ServerConfig, VaultError, VaultServer,
};
use coffer::vault::{LoginDone, Parties};
use coffer::{Classify, ErrorClass};
use coffer_testkit::flows;
use std::path::Path;
use std::sync::Arc;

type Server = VaultServer<SqliteStore, SoftHsm>;

fn config() -> ServerConfig {
    ServerConfig {
        ksf: KsfParams::TEST,
        ..ServerConfig::default()
    }
}

fn server(dir: &Path) -> Server {
    let store = SqliteStore::open(&dir.join("vault.db")).unwrap();
    let hsm = SoftHsm::open_or_create(&dir.join("master.key")).unwrap();
    VaultServer::open(store, hsm, config()).unwrap()
}

fn parties(user: &str) -> Parties {
    Parties {
        user: user.into(),
        server_id: config().server_id,
    }
}

fn register(server: &Server, user: &str, password: &[u8], root: &RootKey) {
    flows::register(server, "default", user, password, root, None).unwrap();
}

/// A full recovery; returns K, or the error class where it stopped.
fn recover(
    server: &Server,
    user: &str,
    password: &[u8],
) -> Result<(RootKey, coffer::vault::SessionId, LoginDone), ErrorClass> {
    flows::recover(server, "default", user, password)
        .map(|r| (r.root, r.session_id, r.done))
        .map_err(|e| e.class())
}

#[test]
fn register_then_recover_gives_back_k() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let root = RootKey::generate().unwrap();
    register(&server, "alice", b"correct horse", &root);
    let status = server.status("default", "alice").unwrap();
    assert!(status.registered);
    assert_eq!(status.guesses_left, 10);
    let (k, _, _) = recover(&server, "alice", b"correct horse").unwrap();
    assert_eq!(k.as_bytes(), root.as_bytes());
    assert_eq!(
        server.status("default", "alice").unwrap().guesses_left,
        10,
        "a verified KE3 resets the count"
    );
    // A second registration for the same user is refused.
    let (_, request) = RegistrationClient::start(b"other").unwrap();
    let err = server
        .register_start("default", "alice", &request)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized);
}

#[test]
fn ten_wrong_guesses_destroy_the_record_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let root = RootKey::generate().unwrap();
    register(&server, "bob", b"right", &root);
    for i in 0..10 {
        if i % 2 == 0 {
            // Abandoned after KE2 (the client sees the password is wrong and stops).
            assert_eq!(
                recover(&server, "bob", b"wrong").err(),
                Some(ErrorClass::WrongPassword)
            );
        } else {
            // Completed with a KE3 the server must reject (taken from another login).
            let (_, ke1) = RecoveryClient::start(b"wrong").unwrap();
            let start = server.recover_start("default", "bob", &ke1).unwrap();
            let forged = vec![0u8; 64];
            let err = server
                .recover_finish("default", &start.session_id, &forged)
                .unwrap_err();
            // 64 bytes parse as a KE3 (a MAC); it does not verify.
            assert_eq!(err.class(), ErrorClass::WrongPassword, "{err:?}");
        }
        assert_eq!(server.status("default", "bob").unwrap().guesses_left, 9 - i);
    }
    // The right password now fails, and the record is gone.
    assert_eq!(
        recover(&server, "bob", b"right").err(),
        Some(ErrorClass::WrongPassword)
    );
    let status = server.status("default", "bob").unwrap();
    assert!(!status.registered);
    assert_eq!(status.state, Some(RecordState::Destroyed));
    // It stays gone, across a restart too.
    drop(server);
    let server = self::server(dir.path());
    assert_eq!(
        recover(&server, "bob", b"right").err(),
        Some(ErrorClass::WrongPassword)
    );
    let events: Vec<String> = server
        .store()
        .audit(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events.iter().filter(|e| *e == "guess").count(), 10);
    assert_eq!(events.iter().filter(|e| *e == "destroyed").count(), 1);
}

#[test]
fn nine_wrong_then_right_recovers_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let root = RootKey::generate().unwrap();
    register(&server, "carol", b"right", &root);
    for _ in 0..9 {
        assert_eq!(
            recover(&server, "carol", b"wrong").err(),
            Some(ErrorClass::WrongPassword)
        );
    }
    assert_eq!(server.status("default", "carol").unwrap().guesses_left, 1);
    let (k, _, _) = recover(&server, "carol", b"right").unwrap();
    assert_eq!(k.as_bytes(), root.as_bytes());
    assert_eq!(server.status("default", "carol").unwrap().guesses_left, 10);
}

#[test]
fn fifty_concurrent_wrong_guesses_get_at_most_ten_real_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(server(dir.path()));
    register(&server, "dave", b"right", &RootKey::generate().unwrap());
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                let (_, ke1) = RecoveryClient::start(b"wrong").unwrap();
                server
                    .recover_start("default", "dave", &ke1)
                    .unwrap()
                    .ke2
                    .len()
            })
        })
        .collect();
    let lengths: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        lengths.iter().all(|&n| n == lengths[0]),
        "real and fake KE2 have one length"
    );
    let guesses = server
        .store()
        .audit(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "guess")
        .count();
    assert_eq!(guesses, 10, "exactly the limit was evaluated for real");
    assert_eq!(
        server.status("default", "dave").unwrap().state,
        Some(RecordState::Destroyed)
    );
}

#[test]
fn fake_ke2_for_unknown_users_looks_like_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    register(&server, "erin", b"pw", &RootKey::generate().unwrap());
    let (_, ke1) = RecoveryClient::start(b"pw").unwrap();
    let real = server.recover_start("default", "erin", &ke1).unwrap();
    let (_, ke1) = RecoveryClient::start(b"pw").unwrap();
    let fake = server.recover_start("default", "nobody", &ke1).unwrap();
    assert_eq!(real.ke2.len(), fake.ke2.len());
    assert_eq!(real.ksf, fake.ksf);
    assert_eq!(
        real.session_id.as_bytes().len(),
        fake.session_id.as_bytes().len()
    );
    assert_eq!(
        recover(&server, "nobody", b"pw").err(),
        Some(ErrorClass::WrongPassword)
    );
    assert!(!server.status("default", "nobody").unwrap().registered);
}

#[test]
fn replayed_and_crossed_ke3_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    register(&server, "frank", b"pw", &RootKey::generate().unwrap());
    // Replay: the same KE3 twice.
    let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.recover_start("default", "frank", &ke1).unwrap();
    let done = client
        .finish(&parties("frank"), &start.ke2, &start.ksf)
        .unwrap();
    server
        .recover_finish("default", &start.session_id, &done.ke3)
        .unwrap();
    let replay = server
        .recover_finish("default", &start.session_id, &done.ke3)
        .unwrap_err();
    assert_eq!(replay.class(), ErrorClass::WrongPassword);
    // Crossed: a valid KE3 of session A sent for session B.
    let (ca, ke1a) = RecoveryClient::start(b"pw").unwrap();
    let ca = ca.ksf_floor(coffer::vault::KsfFloor::NONE);
    let a = server.recover_start("default", "frank", &ke1a).unwrap();
    let (_, ke1b) = RecoveryClient::start(b"pw").unwrap();
    let b = server.recover_start("default", "frank", &ke1b).unwrap();
    let done_a = ca.finish(&parties("frank"), &a.ke2, &a.ksf).unwrap();
    let crossed = server
        .recover_finish("default", &b.session_id, &done_a.ke3)
        .unwrap_err();
    assert_eq!(crossed.class(), ErrorClass::WrongPassword);
}

#[test]
fn a_ke2_for_another_user_or_server_fails_on_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    register(&server, "gina", b"pw", &RootKey::generate().unwrap());
    let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.recover_start("default", "gina", &ke1).unwrap();
    let wrong_server = Parties {
        server_id: "another-vault".into(),
        ..parties("gina")
    };
    assert!(matches!(
        client.finish(&wrong_server, &start.ke2, &start.ksf),
        Err(VaultError::WrongPassword)
    ));
    let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.recover_start("default", "gina", &ke1).unwrap();
    let err = client
        .finish(&parties("someone-else"), &start.ke2, &start.ksf)
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::WrongPassword);
    // A hostile KSF demand is refused before any work.
    let (client, ke1) = RecoveryClient::start(b"pw").unwrap();
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server.recover_start("default", "gina", &ke1).unwrap();
    let err = client
        .finish(&parties("gina"), &start.ke2, "argon2id:m=4000000,t=3,p=1")
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Unsupported);
}

#[test]
fn change_password_needs_a_recovery_and_then_the_old_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let root = RootKey::generate().unwrap();
    register(&server, "hank", b"old", &root);
    // Without a verified recovery: refused.
    let (_, request) = RegistrationClient::start(b"new").unwrap();
    assert_eq!(
        server
            .change_password_start(
                "default",
                &coffer::vault::SessionId::from_bytes([9u8; 16]),
                &request
            )
            .unwrap_err()
            .class(),
        ErrorClass::Unauthorized
    );
    let (k, session, _) = recover(&server, "hank", b"old").unwrap();
    let (client, request) = RegistrationClient::start(b"new").unwrap();
    let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
    let start = server
        .change_password_start("default", &session, &request)
        .unwrap();
    let (upload, envelope) = client
        .finish(
            &parties("hank"),
            &start.response,
            &start.ksf,
            &start.record_id,
            2,
            &k,
        )
        .unwrap();
    assert_eq!(
        server
            .change_password_finish("default", &session, &upload, &envelope)
            .unwrap(),
        2
    );
    assert_eq!(
        recover(&server, "hank", b"old").err(),
        Some(ErrorClass::WrongPassword)
    );
    let (k2, _, _) = recover(&server, "hank", b"new").unwrap();
    assert_eq!(k2.as_bytes(), root.as_bytes());
    // The session was used up by the change.
    let (_, request) = RegistrationClient::start(b"newer").unwrap();
    assert_eq!(
        server
            .change_password_start("default", &session, &request)
            .unwrap_err()
            .class(),
        ErrorClass::Unauthorized
    );
}

#[test]
fn delete_erases_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    register(&server, "ivy", b"pw", &RootKey::generate().unwrap());
    server.delete("default", "ivy").unwrap();
    assert_eq!(
        server.status("default", "ivy").unwrap().state,
        Some(RecordState::Deleted)
    );
    assert_eq!(
        recover(&server, "ivy", b"pw").err(),
        Some(ErrorClass::WrongPassword)
    );
    assert_eq!(
        server.delete("default", "ivy").unwrap_err().class(),
        ErrorClass::NoRecord
    );
    // A new registration starts a new record with a new key.
    register(&server, "ivy", b"pw2", &RootKey::generate().unwrap());
    assert!(server.status("default", "ivy").unwrap().registered);
}

#[test]
fn the_data_directory_without_the_hsm_key_reveals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = RootKey::from_bytes([0x5a; 32]);
    let (envelope, password_file) = {
        let server = server(dir.path());
        // Register by hand to keep what the client sent: the envelope, and the upload from
        // which the server derives the password file.
        let (client, request) = RegistrationClient::start(b"pw").unwrap();
        let client = client.ksf_floor(coffer::vault::KsfFloor::NONE);
        let start = server.register_start("default", "jack", &request).unwrap();
        let (upload, envelope) = client
            .finish(
                &parties("jack"),
                &start.response,
                &start.ksf,
                &start.record_id,
                1,
                &root,
            )
            .unwrap();
        server
            .register_finish("default", "jack", start.record_id, &upload, &envelope, None)
            .unwrap();
        use coffer::vault::Suite;
        let upload = opaque_ke::RegistrationUpload::<Suite>::deserialize(&upload).unwrap();
        let file = opaque_ke::ServerRegistration::<Suite>::finish(upload)
            .serialize()
            .to_vec();
        (envelope, file)
    };
    // Neither K, nor the envelope, nor any 32-byte piece of the password file is in the
    // database or its WAL; and it opens with no other master key.
    let db = std::fs::read(dir.path().join("vault.db")).unwrap();
    let wal = std::fs::read(dir.path().join("vault.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(32).any(|w| w == root.as_bytes()),
            "K is not stored"
        );
        assert!(
            !bytes.windows(envelope.len()).any(|w| w == &envelope[..]),
            "the envelope is sealed"
        );
        for piece in password_file.chunks(32) {
            assert!(
                !bytes.windows(piece.len()).any(|w| w == piece),
                "the password file is sealed"
            );
        }
    }
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let store = SqliteStore::open(&dir.path().join("vault.db")).unwrap();
    let other = SoftHsm::open_or_create(&dir.path().join("master.key")).unwrap();
    let err = VaultServer::open(store, other, config())
        .err()
        .expect("another key cannot open it");
    assert_eq!(err.class(), ErrorClass::Corrupt);
    // And the audit log is append-only.
    // (The triggers' own refusal, on a table that has rows: not a missing table.)
    let conn = rusqlite::Connection::open(dir.path().join("vault.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(rows > 0);
    for statement in ["DELETE FROM audit", "UPDATE audit SET event = 'x'"] {
        let refused = conn.execute(statement, []).unwrap_err().to_string();
        assert!(
            refused.contains("the audit log is append-only"),
            "{statement}: {refused}"
        );
    }
}

#[test]
fn the_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _ = server(dir.path());
    let mode = std::fs::metadata(dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Whether `needle` occurs anywhere in the bytes of `path` (false for a missing file).
fn file_holds(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

/// spec/vault.md §4.3: once a record is destroyed, deleted or replaced, its sealed secrets
/// are in neither the database file nor its write-ahead log (searched byte for byte), and
/// the files are private to their owner.
#[test]
fn destroyed_deleted_and_replaced_secrets_leave_no_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (db, wal) = (dir.path().join("vault.db"), dir.path().join("vault.db-wal"));
    let sealed = |user: &str| -> Vec<u8> {
        let record = server.store().latest("default", user).unwrap().unwrap();
        record.sealed.expect("an active record holds its secrets")
    };
    let on_disk = |bytes: &[u8]| file_holds(&db, bytes) || file_holds(&wal, bytes);
    let root = RootKey::from_bytes([9; 32]);

    // The control: an active record's sealed bytes are found by the search.
    register(&server, "alice", b"pw", &root);
    let alice = sealed("alice");
    assert!(on_disk(&alice), "the search finds live secrets");

    // Destroyed at the limit (10 wrong guesses, then one more).
    for _ in 0..11 {
        let _ = recover(&server, "alice", b"wrong");
    }
    let after = server.store().latest("default", "alice").unwrap().unwrap();
    assert_eq!(after.state, RecordState::Destroyed);
    assert!(
        !on_disk(&alice),
        "a destroyed record's secrets are still on disk"
    );

    // Deleted by its holder.
    register(&server, "bob", b"pw", &root);
    let bob = sealed("bob");
    assert!(on_disk(&bob));
    assert!(server.store().delete("default", "bob").unwrap());
    assert!(
        !on_disk(&bob),
        "a deleted record's secrets are still on disk"
    );

    // Replaced by a password change: the old version's secrets go.
    register(&server, "carol", b"old", &root);
    let carol_v1 = sealed("carol");
    let record = server.store().latest("default", "carol").unwrap().unwrap();
    assert!(server
        .store()
        .replace(&record.record_id, record.version, &[7u8; 200])
        .unwrap());
    assert!(
        !on_disk(&carol_v1),
        "a replaced version's secrets are still on disk"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "vault.db is {mode:o}");
    }
}
