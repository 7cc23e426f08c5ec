//! The sandbox servers (`SQLJUDGE_SANDBOX_URLS`): one PostgreSQL cluster or several, each
//! holding every dataset and test. Executors are spread over them; one that is down or not
//! yet up to date pauses only its own executors (`Sandbox::ready`, kept by `restore::keep`).
//! Admin loads, reference runs, sample previews and runs use the first one; the others are
//! brought up to date from the platform's scripts, and grade a problem only in a version they
//! were brought up to date for (`Sandbox::holds`).
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
            .enumerate()
            .map(|(i, url)| {
                let server = Sandbox::new(SandboxSettings {
                    url,
                    urls: None,
                    ..settings.clone()
                })?;
                Ok(Arc::new(if i == 0 {
                    server
                } else {
                    server.into_secondary()
                }))
            })
            .collect::<Result<Vec<_>, SandboxError>>()?;
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
}
