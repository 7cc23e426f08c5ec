//! PostgreSQL clusters of a test's own (`initdb` + `pg_ctl`, on a free port in a temp dir),
//! for tests that stop a sandbox server: the machine's shared one is never touched.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::faults::{free_port, make_certificates};

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    /// Serving TLS only (`hostssl`), with a certificate of its own authority (`ca_file`).
    tls: bool,
    /// How logins other than `postgres` authenticate over TCP (trust when None).
    logins: Option<&'static str>,
}

/// A PostgreSQL program: on the PATH, else Debian's newest under /usr/lib/postgresql.
fn program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        found.pop().unwrap_or_else(|| PathBuf::from(name))
    })
}

/// PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
fn run(name: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program(name));
        c
    } else {
        Command::new(program(name))
    };
    let out = command
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{name} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

impl PgCluster {
    /// Created and started, with trust authentication for `postgres` over TCP.
    pub fn start() -> PgCluster {
        PgCluster::create(false, None)
    }

    /// Accepting TCP connections over TLS only, with a certificate for 127.0.0.1 signed by an
    /// authority made for it (`ca_file`).
    pub fn start_tls() -> PgCluster {
        PgCluster::create(true, None)
    }

    /// As `start` (`start_tls` when `tls`), but logins other than `postgres` give their
    /// password by `method` of pg_hba.conf (`md5`: stored as MD5, so that MD5 is asked for).
    pub fn start_with_logins(tls: bool, method: &'static str) -> PgCluster {
        PgCluster::create(tls, Some(method))
    }

    /// The authority that signed a TLS cluster's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn create(tls: bool, logins: Option<&'static str>) -> PgCluster {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sqljudge-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if tls {
            // `redis.*` is the server's pair, whatever the server.
            make_certificates(&dir);
            use std::os::unix::fs::PermissionsExt;
            // PostgreSQL refuses a key others may read.
            std::fs::set_permissions(
                dir.join("redis.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let _ = Command::new("chown")
            .arg("-R")
            .arg("postgres:")
            .arg(&dir)
            .status();
        let cluster = PgCluster {
            port,
            dir,
            tls,
            logins,
        };
        run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
            &cluster.dir,
        )
        .unwrap();
        if tls || logins.is_some() {
            let host = if tls { "hostssl" } else { "host" };
            let method = logins.unwrap_or("trust");
            std::fs::write(
                cluster.dir.join("data/pg_hba.conf"),
                format!(
                    "local all all trust\n{host} all postgres 127.0.0.1/32 trust\n\
                     {host} all all 127.0.0.1/32 {method}\n"
                ),
            )
            .unwrap();
        }
        cluster.start_again();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        if self.logins == Some("md5") {
            options += " -c password_encryption=md5";
        }
        if self.tls {
            let dir = self.dir.display();
            options += &format!(
                " -c ssl=on -c ssl_cert_file={dir}/redis.crt -c ssl_key_file={dir}/redis.key"
            );
        }
        let log = self.dir.join("log").to_string_lossy().into_owned();
        run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
            &self.dir,
        )
        .unwrap();
    }

    /// Stops it at once (`-m immediate`: no checkpoint, every connection cut).
    pub fn stop(&self) {
        self.try_stop().unwrap();
    }

    fn try_stop(&self) -> Result<(), String> {
        run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            &self.dir,
        )
    }

    /// A superuser URL of database `db` on it.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.try_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
