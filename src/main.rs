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

#[actix_web::main]
async fn main() -> Result<(), StartupError> {
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
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            prepare_platform_db(&settings.database).await?;
            log::info!("migrations are up to date");
        }
        Command::Promote { username, revoke } => {
            let pool = prepare_platform_db(&settings.database).await?;
            let changed = sqljudge::db::run(&pool, move |c| {
                sqljudge::db::models::User::set_admin(c, &username, !revoke)
            })
            .await?;
            if changed == 0 {
                return Err("no such user".into());
            }
        }
    }
    Ok(())
}
