use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sqljudge::config::Settings;
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
        Command::Serve { demo } => {
            let app = Application::build(settings).await?;
            if let Some(dir) = demo {
                sqljudge::demo::load(&app.state(), &dir).await?;
            }
            log::info!("sqljudge listening on port {}", app.port());
            app.run_until_terminated().await?;
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
