//! What a user gets from `scripts/install` and from the Debian package of
//! `scripts/package`: the installed daemon runs (finding its installed
//! helper), `barrierd status` sees it, and a C client compiled with only
//! `pkg-config --cflags barrierd` (not this tree's include/) completes
//! barriers through it. The package test installs the package on this
//! machine with dpkg and purges it afterwards.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{Daemon, TempDir};

/// Both tests build the release binaries and run daemons.
static ALONE: Mutex<()> = Mutex::new(());

const VERSION: &str = env!("CARGO_PKG_VERSION");

const C_CLIENT: &str = r#"
#include <stdio.h>
#include <barrierd.h>

int main(int argc, char **argv)
{
	struct barrierd_client c;
	int err = barrierd_open(&c, argv[1]), i;

	if (argc != 2 || err) {
		fprintf(stderr, "barrierd_open: %s\n", barrierd_strerror(err));
		return 1;
	}
	for (i = 0; i < 100; i++) {
		err = barrierd_heavy_barrier(&c, 10000000000ULL);
		if (err) {
			fprintf(stderr, "barrier %d: %s\n", i, barrierd_strerror(err));
			return 1;
		}
	}
	barrierd_close(&c);
	puts("100 barriers");
	return 0;
}
"#;

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn assert_mode(path: &Path, mode: u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        mode,
        "{}",
        path.display()
    );
}

/// The unit names the installed daemon, and systemd accepts it.
fn verify_unit(unit: &Path, barrierd: &Path) {
    let text = std::fs::read_to_string(unit).unwrap();
    let exec = format!("ExecStart={}\n", barrierd.display());
    assert!(text.contains(&exec), "{} lacks {exec}", unit.display());
    common::systemd_analyze_verify(module_path!(), unit);
}

/// Runs the installed `barrierd` and a client built as the README says
/// users build theirs.
fn exercise(barrierd: &Path, pkg_config_path: Option<&Path>, dir: &TempDir) {
    let pkg_config = |what: &str| {
        let mut command = Command::new("pkg-config");
        if let Some(path) = pkg_config_path {
            command.env("PKG_CONFIG_PATH", path);
        }
        run(command.args([what, "barrierd"]))
    };
    let cflags = pkg_config("--cflags");
    let version = pkg_config("--modversion");
    assert_eq!(version.trim(), VERSION);

    let source = dir.join("client.c");
    std::fs::write(&source, C_CLIENT).unwrap();
    let client = dir.join("client");
    run(Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-O2"])
        .args(cflags.split_whitespace())
        .arg(&source)
        .arg("-o")
        .arg(&client));

    let path = dir.join("public_file");
    let daemon = Daemon::start_command(Command::new(barrierd), &path, &[]);
    assert_eq!(run(Command::new(&client).arg(&path)).trim(), "100 barriers");
    let status = run(Command::new(barrierd)
        .args(["status", "--json", "--window-ms", "100"])
        .arg(&path));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["pid"], daemon.publisher_pid() as u64);
    let (exit, log) = daemon.stop();
    assert!(exit.success(), "the installed daemon failed:\n{log}");
}

#[test]
fn scripts_install_installs_a_daemon_a_header_and_a_pkg_config_file_that_work() {
    require_privileged!();
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = TempDir::new("install");
    let prefix = dir.join("prefix");
    run(Command::new(common::repo().join("scripts/install"))
        .arg("--prefix")
        .arg(&prefix));
    for (file, mode) in [
        ("bin/barrierd", 0o755),
        ("bin/barrierd-helper", 0o755),
        ("include/barrierd.h", 0o644),
        ("share/pkgconfig/barrierd.pc", 0o644),
        ("lib/systemd/system/barrierd.service", 0o644),
        ("lib/sysusers.d/barrierd.conf", 0o644),
        ("share/doc/barrierd/README.md", 0o644),
        ("share/doc/barrierd/ARCHITECTURE.md", 0o644),
    ] {
        assert_mode(&prefix.join(file), mode);
    }
    let barrierd = prefix.join("bin/barrierd");
    verify_unit(
        &prefix.join("lib/systemd/system/barrierd.service"),
        &barrierd,
    );
    let pkg_config = prefix.join("share/pkgconfig");
    exercise(&barrierd, Some(&pkg_config), &dir);
}

/// Purges the package on drop, so that a failed test leaves no package.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed_version().is_some() {
            let _ = Command::new("dpkg").args(["--purge", "barrierd"]).status();
        }
    }
}

fn installed_version() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", "barrierd"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.strip_prefix("install ok installed ")
        .map(str::to_owned)
}

#[test]
fn the_debian_package_installs_a_daemon_and_a_client_library_that_work() {
    require_privileged!();
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(
        installed_version(),
        None,
        "a barrierd package is installed on this machine, and this test installs and purges its own: remove it first (dpkg --purge barrierd)"
    );
    run(&mut Command::new(common::repo().join("scripts/package")));
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb: PathBuf = common::repo().join(format!(
        "target/debian/barrierd_{VERSION}-1_{}.deb",
        arch.trim()
    ));
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for file in [
        "./usr/bin/barrierd",
        "./usr/bin/barrierd-helper",
        "./usr/include/barrierd.h",
        "./usr/share/pkgconfig/barrierd.pc",
        "/systemd/system/barrierd.service",
        "./usr/lib/sysusers.d/barrierd.conf",
    ] {
        assert!(
            contents.contains(file),
            "the package lacks {file}:\n{contents}"
        );
    }
    let depends = run(Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .arg("Depends"));
    assert!(
        depends.contains("libseccomp") && depends.contains("libelf"),
        "Depends: {depends}"
    );

    let _installed = Installed;
    run(Command::new("dpkg").arg("--install").arg(&deb));
    assert_eq!(installed_version(), Some(format!("{VERSION}-1")));
    for account in ["barrierd", "barrierd-helper"] {
        run(Command::new("getent").args(["passwd", account]));
    }
    let barrierd = Path::new("/usr/bin/barrierd");
    let unit = ["/lib/systemd/system", "/usr/lib/systemd/system"]
        .iter()
        .map(|dir| Path::new(dir).join("barrierd.service"))
        .find(|unit| unit.exists())
        .expect("the package installs no barrierd.service");
    verify_unit(&unit, barrierd);
    let dir = TempDir::new("package");
    exercise(barrierd, None, &dir);

    run(Command::new("dpkg").args(["--purge", "barrierd"]));
    assert_eq!(installed_version(), None);
    assert!(!barrierd.exists(), "purging left {}", barrierd.display());
}

/// The README's first C command, run as a new user runs it: from the root
/// of the tree (where `client/` is a directory, so `-o client` failed).
/// It runs in a scratch copy of the tree's layout, so that its output
/// stays out of the tree.
#[test]
fn the_readmes_c_command_builds_from_the_root_of_the_tree() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|line| line.starts_with("cc ") && line.contains("-Iinclude"))
        .expect("the README shows no cc command");
    let build = line.split(" && ").next().unwrap();
    let dir = TempDir::new("readme-cc");
    // The tree's top level as real directories (a linker replaces a
    // symbolic link it is told to write), their entries as links.
    for entry in std::fs::read_dir(common::repo()).unwrap() {
        let entry = entry.unwrap();
        let top = dir.join(entry.file_name().to_str().unwrap());
        if !entry.file_type().unwrap().is_dir() {
            std::os::unix::fs::symlink(entry.path(), &top).unwrap();
            continue;
        }
        std::fs::create_dir(&top).unwrap();
        for inner in std::fs::read_dir(entry.path()).unwrap() {
            let inner = inner.unwrap();
            std::os::unix::fs::symlink(inner.path(), top.join(inner.file_name())).unwrap();
        }
    }
    let output = Command::new("sh")
        .args(["-c", build])
        .current_dir(dir.join(""))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{build}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
