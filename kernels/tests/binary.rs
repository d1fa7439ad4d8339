//! The server binary itself: listens on 127.0.0.1:0 and reports the address, answers `--probe`, and
//! exits 0 after SIGTERM.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kaizen-kernels");

fn probe(address: &str) -> bool {
    Command::new(BINARY)
        .args(["--probe", address, "--log-format", "text"])
        .stderr(Stdio::null())
        .status()
        .expect("run the probe")
        .success()
}

#[test]
fn serves_until_sigterm_then_exits_cleanly() {
    let dir = std::env::temp_dir().join(format!("kaizen-kernels-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let address_file: PathBuf = dir.join("address");
    let mut child = Command::new(BINARY)
        .args(["--address", "127.0.0.1:0", "--log-format", "text", "--threads", "1"])
        .arg("--address-file")
        .arg(&address_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !address_file.exists() {
        assert!(Instant::now() < deadline, "no address reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    let address = std::fs::read_to_string(&address_file).expect("address");
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(probe(&address), "the probe should find the server SERVING");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    assert!(!probe(&address), "nothing serves after shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
