//! Modes must not depend on the umask. The umask is process-wide, so this
//! check has a test binary of its own.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use a365_store::{Credential, FileStore, Store, write_atomic};
use rustix::fs::Mode;
use rustix::process::umask;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn modes_ignore_the_umask() {
    let state = tempfile::tempdir().expect("tempdir");
    let credential = Credential {
        client_secret: None,
        refresh_token: Some("rt".into()),
        access_token: None,
        access_expires_at_ms: None,
        access_scopes: Vec::new(),
        updated_at_ms: 0,
        ..Default::default()
    };
    // Too loose, then too tight: neither may show in the result.
    for (mask, name) in [(0o000, "loose"), (0o277, "tight")] {
        // The parent is not ours to fix; under 0277 a non-root user could
        // not create anything in it.
        fs::create_dir(state.path().join(name)).expect("parent");
        let dir = state.path().join(name).join("a365");
        let old = umask(Mode::from_raw_mode(mask));
        let result = FileStore::open(dir.clone()).and_then(|store| {
            store.save("work", &credential)?;
            Ok(store)
        });
        let config = dir.join("config.toml");
        let written = write_atomic(&config, b"x");
        umask(old);
        let store = result.expect("open and save");
        written.expect("write_atomic");
        assert_eq!(mode(&dir), 0o700, "{name}");
        assert_eq!(mode(store.dir()), 0o700, "{name}");
        assert_eq!(mode(&store.dir().join("work.json")), 0o600, "{name}");
        assert_eq!(mode(&config), 0o600, "{name}");
        assert!(store.load("work").expect("load").is_some());
    }
}
