//! The sandbox servers (`SQLJUDGE_SANDBOX_URLS`): one PostgreSQL cluster or several, each
//! holding every dataset and test. Executors are spread over them; one that is down or not
//! yet up to date pauses only its own executors (`Sandbox::ready`, kept by `restore::keep`).
//! Admin loads, reference runs, sample previews and runs use the first one; the others are
//! brought up to date from the platform's scripts after every admin change.
use std::sync::Arc;

use super::sandbox::{Sandbox, SandboxError};
use crate::config::SandboxSettings;

pub struct SandboxServers {
    servers: Vec<Arc<Sandbox>>,
}

impl SandboxServers {
    pub fn new(settings: &SandboxSettings) -> Result<SandboxServers, SandboxError> {
        let servers = settings
            .server_urls()
            .into_iter()
            .map(|url| {
                Sandbox::new(SandboxSettings {
                    url,
                    urls: None,
                    ..settings.clone()
                })
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SandboxServers { servers })
    }

    /// Where the catalogue is loaded first and checked.
    pub fn primary(&self) -> &Arc<Sandbox> {
        &self.servers[0]
    }

    pub fn all(&self) -> &[Arc<Sandbox>] {
        &self.servers
    }

    /// The server executor `index` grades on: round robin.
    pub fn for_executor(&self, index: usize) -> &Arc<Sandbox> {
        &self.servers[index % self.servers.len()]
    }

    /// After an admin change (recorded in the platform database): the other servers take no
    /// job until their keepers have brought it there.
    pub fn changed(&self) {
        for server in &self.servers[1..] {
            server.mark_stale();
        }
    }
}
