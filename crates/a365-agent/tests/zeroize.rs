//! Our own buffers never free a copy of a secret unwiped: this binary's
//! allocator scans every block freed while a check runs for a marker that
//! only the test's secrets contain. A `Vec` that grows while a token is
//! written into it frees the smaller, unwiped copy: that is what this
//! catches (and caught, in the codec, the JSON line reader, the server's
//! read buffer and the token request's form body).
//!
//! Copies made inside libraries (serde_json's strings, hyper's buffers) are
//! beyond this; SECURITY.md says so.

// A global allocator is `unsafe` by its nature; this one only forwards to
// the system allocator after reading the block it is handed.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use a365_proto::{Encoding, Response, TokenReply, WireSecret, codec, frame};
use secrecy::SecretString;

const MARK: &[u8] = b"Zq7-SECRET-MARK-";

static ARMED: AtomicBool = AtomicBool::new(false);

std::thread_local! {
    /// This thread runs the check: frees elsewhere (the test harness,
    /// another test's threads ending) are not ours to judge.
    static CHECKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static HITS: AtomicUsize = AtomicUsize::new(0);
/// One check at a time: the allocator's state is global.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Scanning;

// SAFETY: every call is forwarded unchanged to `System`; `dealloc` only
// reads the `layout.size()` bytes at `ptr`, which the caller owns until
// the block is handed on.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && CHECKING.try_with(std::cell::Cell::get).unwrap_or(false)
        {
            // SAFETY: the block is live and `layout.size()` long until freed below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(MARK.len()).any(|w| w == MARK) {
                HITS.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// Held for a whole test: another test's set-up (building its secret)
/// frees copies of the marker too.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many freed blocks still held the marker while `f` ran.
fn unwiped_frees(f: impl FnOnce()) -> usize {
    HITS.store(0, Ordering::SeqCst);
    CHECKING.with(|c| c.set(true));
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    CHECKING.with(|c| c.set(false));
    HITS.load(Ordering::SeqCst)
}

/// A token of `len` bytes made of the marker, built outside any check.
fn secret(len: usize) -> String {
    MARK.iter().cycle().take(len).map(|&b| b as char).collect()
}

#[test]
fn encoding_a_token_reply_leaves_no_copy() {
    let _alone = alone();
    let token = secret(2000);
    let reply = Response::Token(TokenReply {
        profile: "work".into(),
        token: WireSecret::new(SecretString::from(token.clone())),
        expires_at: Some(1),
        scopes: vec!["openid".into()],
    });
    for encoding in [Encoding::Binary, Encoding::Json] {
        let hits = unwiped_frees(|| {
            let bytes = codec::encode_response(&reply, encoding).unwrap();
            assert!(bytes.windows(MARK.len()).any(|w| w == MARK));
            drop(bytes);
        });
        assert_eq!(hits, 0, "{encoding:?}");
    }
    zeroize::Zeroize::zeroize(&mut token.into_bytes());
}

#[test]
fn reading_a_json_line_leaves_no_copy() {
    let _alone = alone();
    let line = format!(
        "{{\"version\":1,\"request\":{{\"x\":\"{}\"}}}}\n",
        secret(3000)
    );
    let hits = unwiped_frees(|| {
        let mut input = line.as_bytes();
        let read = frame::read_line(&mut input).unwrap();
        assert_eq!(read.len(), line.len() - 1);
        drop(read);
    });
    assert_eq!(hits, 0);
    zeroize::Zeroize::zeroize(&mut line.into_bytes());
}

#[test]
fn the_servers_read_buffer_leaves_no_copy() {
    let _alone = alone();
    let line = format!("{{\"x\":\"{}\"}}\n", secret(3000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let hits = unwiped_frees(|| {
        runtime.block_on(async {
            let mut reader = frame::ZeroizingBufReader::with_capacity(4096, line.as_bytes());
            let read = frame::read_line_async(&mut reader).await.unwrap();
            assert_eq!(read.len(), line.len() - 1);
        });
    });
    assert_eq!(hits, 0);
    zeroize::Zeroize::zeroize(&mut line.into_bytes());
}

#[test]
fn the_token_request_form_leaves_no_copy() {
    let _alone = alone();
    let refresh_token = secret(1500);
    let hits = unwiped_frees(|| {
        let body = a365_agent::provider::oauth::form_body(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", "c"),
            ("client_secret", &refresh_token),
        ]);
        assert!(body.windows(MARK.len()).any(|w| w == MARK));
        drop(body);
    });
    assert_eq!(hits, 0);
    zeroize::Zeroize::zeroize(&mut refresh_token.into_bytes());
}

/// The check itself works: a plain `Vec` that grows is caught.
#[test]
fn a_growing_vec_is_caught() {
    let _alone = alone();
    let token = secret(4000);
    let hits = unwiped_frees(|| {
        let mut grown = Vec::with_capacity(16);
        grown.extend_from_slice(&token.as_bytes()[..64]);
        grown.extend_from_slice(token.as_bytes());
        zeroize::Zeroize::zeroize(&mut grown);
    });
    assert!(hits >= 1, "the scan sees an unwiped copy");
    zeroize::Zeroize::zeroize(&mut token.into_bytes());
}
