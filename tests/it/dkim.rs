//! DKIM: every message is signed after all its headers are set, so the
//! signature covers List-Unsubscribe and List-Unsubscribe-Post (RFC 8058),
//! and an independent verifier (Python's dkimpy) accepts it. Skipped, saying
//! so, where dkimpy or openssl is not installed.

use std::process::Command;

use crate::support::{outside, stderr, stdout, Site};

const VERIFY: &str = r#"
import sys, dkim
record = sys.argv[1].encode()
def dns(name, timeout=5):
    assert name == b"herald._domainkey.news.example.com.", name
    return record
ok = True
for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    good = dkim.verify(raw, dnsfunc=dns)
    header = raw.split(b"\r\n\r\n")[0].decode()
    print(path, "pass" if good else "FAIL")
    ok = ok and good
sys.exit(0 if ok else 1)
"#;

fn openssl(args: &[&str], dir: &std::path::Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn verify(record: &str, files: &[std::path::PathBuf]) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(VERIFY).arg(record);
    for f in files {
        cmd.arg(f);
    }
    cmd.output().expect("python3")
}

#[test]
fn signatures_verify_and_cover_the_unsubscribe_headers() {
    if !outside::available(&outside::DKIMPY) {
        return;
    }
    let site = Site::init();
    openssl(&["genrsa", "-traditional", "-out", "dkim.pem", "2048"], site.path());
    let public = openssl(&["rsa", "-in", "dkim.pem", "-pubout", "-outform", "DER"], site.path());
    let record = format!("v=DKIM1; k=rsa; p={}", base64(&public));
    let env = [("HERALD_MAIL_DKIM_SELECTOR", "herald"), ("HERALD_MAIL_DKIM_KEY_FILE", "dkim.pem")];
    let out = site.herald_env(&["run", "--now", "2026-11-24T07:00:00Z"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let files = site.outbox();
    assert_eq!(files.len(), 4);

    for path in &files {
        let raw = std::fs::read_to_string(path).unwrap();
        let signature =
            raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ").replace("\r\n\t", " ");
        let signature = signature
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:"))
            .expect("a DKIM-Signature header");
        let h =
            signature.split("h=").nth(1).unwrap().split(';').next().unwrap().to_ascii_lowercase();
        for name in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert!(h.split(':').any(|n| n.trim() == name), "h= lacks {name}: {h}");
        }
        assert!(
            signature.contains("d=news.example.com") && signature.contains("s=herald"),
            "{signature}"
        );
    }
    let out = verify(&record, &files);
    assert!(out.status.success(), "dkimpy: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).matches(" pass").count(), 4, "{}", stdout(&out));

    // Changing the unsubscribe link breaks the signature: it is covered.
    let tampered = site.file("tampered.eml");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(
        &tampered,
        raw.replacen("unsubscribe?token=daily.", "unsubscribe?token=evil.", 1),
    )
    .unwrap();
    let out = verify(&record, &[tampered]);
    assert!(!out.status.success(), "a tampered List-Unsubscribe still verified: {}", stdout(&out));
}

#[test]
fn a_bad_key_is_a_clear_error() {
    let site = Site::init();
    site.write("dkim.pem", "not a key\n");
    let env = [("HERALD_MAIL_DKIM_SELECTOR", "herald"), ("HERALD_MAIL_DKIM_KEY_FILE", "dkim.pem")];
    let out = site.herald_env(&["run", "--now", "2026-11-24T07:00:00Z"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("dkim.pem") && err.contains("RSA private key"), "{err}");
    assert!(site.outbox().is_empty(), "nothing unsigned goes out");
    let out = site.herald_env(&["check"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("dkim.pem") && stdout(&out).contains("RSA private key"),
        "{}",
        stdout(&out)
    );
    let out = site.herald_env(&["check"], &[("HERALD_MAIL_DKIM_SELECTOR", "herald")]);
    assert!(stdout(&out).contains("dkim_key_file"), "{}", stdout(&out));
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
