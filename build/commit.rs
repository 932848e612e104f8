//! Build script shared by `a365` and `a365-agent`: `A365_COMMIT`, the
//! commit the binary was built from (`git rev-parse`), or "unknown" outside
//! a git checkout (a crate tarball). Both `--version`s print it.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=A365_COMMIT={commit}");
    // A new commit or checkout changes HEAD or the ref it points to. Only
    // paths that exist: cargo reruns for a missing one on every build.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let path = root.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
