use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sqljudge::config::{Role, Settings};
use sqljudge::packs::{self, Pack};
use sqljudge::startup::{prepare_platform_db, Application, StartupError};

#[derive(Parser)]
#[command(name = "sqljudge", version, about = "SQL practice and grading service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run pending migrations, then serve.
    Serve {
        /// Load (or refresh) the demo problem set from this directory before serving.
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "demo")]
        demo: Option<PathBuf>,
        /// all (default), api (HTTP without grading) or worker (grading; HTTP for health and
        /// metrics only). Overrides `server.role`.
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Problem packs: datasets, hidden tests and problems as files (see README, "Problem packs").
    Pack {
        #[command(subcommand)]
        command: PackCommand,
    },
    /// Run pending migrations and exit.
    Migrate,
    /// Give a registered user the admin role (or take it away with --revoke).
    Promote {
        username: String,
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum PackCommand {
    /// Create or update everything a pack holds, through the admin API's checks; print what changed.
    Import {
        /// A pack directory or a .tar.gz of one; with --from, the source's own checkout.
        path: PathBuf,
        /// Read PATH as another project's layout instead of a pack.
        #[arg(long, value_enum)]
        from: Option<Source>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the current datasets, tests and problems as a pack (a directory, or a .tar.gz).
    Export {
        path: PathBuf,
        #[arg(long, default_value = "export")]
        name: String,
        /// Where the content comes from and its licence (keep pgexercises' attribution).
        #[arg(long)]
        notice: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Source {
    /// A checkout of https://github.com/AlisdairO/pgexercises.
    Pgexercises,
}

/// Allocations of 1 MiB or more get memory of their own, returned to the system when freed.
/// glibc otherwise raises that threshold to the largest block freed so far: after a password
/// hash (19 MiB) every thread's arena kept 19 MiB, and 24 concurrent logins held 637 MiB; now
/// the peak is what runs at once (71 MiB) and it falls back to 32 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks() {}

/// Ends a one-shot command once its work is committed and printed, without tearing down the
/// service's actors and pools mid-flight: a run ended once by a signal while they stopped.
fn finish(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; everything that must last is in PostgreSQL.
    unsafe { libc::_exit(code) }
}

fn main() -> Result<(), StartupError> {
    return_large_blocks();
    run()
}

#[actix_web::main]
async fn run() -> Result<(), StartupError> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command {
        Command::Serve { demo, role } => {
            let mut settings = settings;
            if let Some(role) = role {
                settings.server.role = role;
            }
            let app = Application::build(settings).await?;
            if let Some(dir) = demo {
                let report = packs::load(&app.state(), &dir).await?;
                log::info!("demo problem set: {}", report.summary().replace('\n', "; "));
            }
            log::info!("sqljudge listening on port {}", app.port());
            app.run_until_terminated().await?;
        }
        Command::Pack { command } => {
            // The service's own code on the same databases, without its HTTP port or graders.
            let mut settings = settings;
            settings.server.bind = "127.0.0.1:0".into();
            settings.executor.workers = 0;
            let app = Application::build(settings).await?;
            let state = app.state();
            match command {
                PackCommand::Import { path, from, json } => {
                    let pack = match from {
                        None => Pack::read(&path)?,
                        Some(Source::Pgexercises) => packs::pgexercises::read(&path)?,
                    };
                    let report = packs::import(&state, &pack).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        println!("{}", report.summary());
                    }
                    finish(if report.failed() > 0 { 1 } else { 0 });
                }
                PackCommand::Export { path, name, notice } => {
                    let pack = packs::export(&state, &name, notice).await?;
                    pack.write(&path)?;
                    println!(
                        "{}: {} datasets, {} tests, {} problems",
                        path.display(),
                        pack.datasets.len(),
                        pack.tests.len(),
                        pack.problems.len()
                    );
                    finish(0);
                }
            }
        }
        Command::Migrate => {
            prepare_platform_db(&settings.database).await?;
            log::info!("migrations are up to date");
        }
        Command::Promote { username, revoke } => {
            let pool = prepare_platform_db(&settings.database).await?;
            let sessions = sqljudge::db::run(&pool, move |c| {
                use sqljudge::db::models::{AuthToken, User};
                let Some(user) = User::find_by_username(c, &username)? else {
                    return Ok(None);
                };
                User::set_admin(c, &username, !revoke)?;
                AuthToken::active_of_user(c, user.id).map(Some)
            })
            .await?
            .ok_or("no such user")?;
            // Logged-in sessions carry the role: drop them from Redis so the next request
            // reads it from Postgres.
            let dropped = match sqljudge::redis::RedisQueue::connect(&settings.redis).await {
                Ok(queue) => queue.drop_sessions(&sessions).await,
                Err(e) => Err(e),
            };
            if let Err(e) = dropped {
                log::warn!(
                    "Redis is unreachable ({e}): the role applies to this user's current \
                     sessions when they expire or Redis restarts, and to new logins at once"
                );
            }
        }
    }
    Ok(())
}
