//! Where Redis is: one address (`redis://`, `rediss://`), or the master a set of Redis
//! Sentinels name (`redis+sentinel://`, `rediss+sentinel://`). Every connection (the shared
//! one, each HTTP worker's own, the executors' blocking ones, pub/sub) is made from the current
//! [`Link`], so once the master moves, the next reconnection of each goes to the new one.
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult, TlsCertificates, TlsMode};

/// The client for the current master and the shared connection to it.
pub struct Link {
    pub client: ::redis::Client,
    pub conn: ConnectionManager,
    /// Counts the masters followed: connections made from an older link must be remade.
    pub generation: u64,
}

impl Link {
    pub async fn open(
        client: ::redis::Client,
        timeout: Duration,
        generation: u64,
    ) -> RedisResult<Link> {
        let conn = Link::manager(&client, timeout).await?;
        Ok(Link {
            client,
            conn,
            generation,
        })
    }

    /// A connection to `client`'s server that reconnects by itself, driven by a task on this
    /// thread's runtime.
    pub async fn manager(
        client: &::redis::Client,
        timeout: Duration,
    ) -> RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            // No retry (each waits 100-200 ms first): a Redis that refuses fails a command at
            // once, and the request falls back; the next command connects again.
            .set_number_of_retries(0);
        ConnectionManager::new_with_config(client.clone(), config).await
    }

    /// host:port of the server this link talks to.
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }
}

/// How the master is found.
pub enum Locator {
    Fixed(::redis::Client),
    /// Asked of the sentinels at start and whenever the master stops taking writes.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A parsed `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db]`
/// (an IPv6 host in brackets: `[::1]:26379`).
#[derive(PartialEq, Eq)]
pub struct SentinelUrl {
    pub tls: bool,
    pub sentinels: Vec<(String, u16)>,
    pub service: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

const SENTINEL_PORT: u16 = 26379;

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn sentinel_address(host: &str) -> RedisResult<(String, u16)> {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let (name, rest) = v6
                .split_once(']')
                .ok_or_else(|| invalid("redis+sentinel URL: an unclosed [ in an address"))?;
            match rest.strip_prefix(':') {
                Some(port) => (name, Some(port)),
                None if rest.is_empty() => (name, None),
                None => return Err(invalid("redis+sentinel URL: a malformed address")),
            }
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if name.is_empty() {
        return Err(invalid("redis+sentinel URL: an empty sentinel address"));
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(port) => port
            .parse()
            .map_err(|_| invalid("redis+sentinel URL: a sentinel's port is not a number"))?,
    };
    Ok((name.to_string(), port))
}

fn invalid(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what))
}

/// Percent-decoding of the user-info part, so that a password may hold `@`, `:` or `/`.
fn decode(part: &str) -> RedisResult<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("redis URL: credentials are not UTF-8"))
}

impl SentinelUrl {
    /// None: not a Sentinel URL. The errors never quote the URL: it may hold a password.
    pub fn parse(url: &str) -> Option<RedisResult<SentinelUrl>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some(SentinelUrl::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> RedisResult<SentinelUrl> {
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("redis+sentinel URL: the master's name is missing"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((user, password)) => (user, Some(decode(password)?)),
                    None => (info, None),
                };
                (
                    (!user.is_empty()).then(|| decode(user)).transpose()?,
                    password,
                )
            }
        };
        let sentinels = hosts
            .split(',')
            .map(sentinel_address)
            .collect::<RedisResult<Vec<_>>>()?;
        let mut segments = path.split('/');
        let service = segments.next().unwrap_or_default();
        if service.is_empty() {
            return Err(invalid("redis+sentinel URL: the master's name is missing"));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<u16>()
                .map(i64::from)
                .map_err(|_| invalid("redis+sentinel URL: the database is not a number"))?,
        };
        if segments.next().is_some() || service.contains('?') {
            return Err(invalid(
                "redis+sentinel URL: expected /master-name or /master-name/db",
            ));
        }
        Ok(SentinelUrl {
            tls,
            sentinels,
            service: service.to_string(),
            db,
            username,
            password,
        })
    }

    /// The credentials and database are the master's; sentinels are reached without AUTH.
    pub fn client(self, certificates: Option<TlsCertificates>) -> RedisResult<SentinelClient> {
        let tls = self.tls;
        let addresses = self.sentinels.into_iter().map(|(host, port)| match tls {
            false => ConnectionAddr::Tcp(host, port),
            true => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, self.service, SentinelServerType::Master)?
                .set_client_to_redis_db(self.db);
        if let Some(username) = self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        builder.build()
    }
}

impl Locator {
    pub fn new(url: &str, certificates: Option<TlsCertificates>) -> RedisResult<Locator> {
        match SentinelUrl::parse(url) {
            Some(parsed) => Ok(Locator::Sentinel(tokio::sync::Mutex::new(
                parsed?.client(certificates)?,
            ))),
            None => Ok(Locator::Fixed(match certificates {
                None => ::redis::Client::open(url)?,
                Some(certificates) => ::redis::Client::build_with_tls(url, certificates)?,
            })),
        }
    }

    /// A client for the master as of now (checked by the sentinel client: it asks the node
    /// for its ROLE).
    pub async fn master(&self) -> RedisResult<::redis::Client> {
        match self {
            Locator::Fixed(client) => Ok(client.clone()),
            Locator::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }

    pub fn follows_failover(&self) -> bool {
        matches!(self, Locator::Sentinel(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let url = SentinelUrl::parse("redis+sentinel://a:26380,b,10.0.0.3:1/mymaster/2")
            .unwrap()
            .unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                tls: false,
                sentinels: vec![
                    ("a".into(), 26380),
                    ("b".into(), 26379),
                    ("10.0.0.3".into(), 1)
                ],
                service: "mymaster".into(),
                db: 2,
                username: None,
                password: None,
            }
        );
        let url = SentinelUrl::parse("rediss+sentinel://u:p%40ss:w@h/m")
            .unwrap()
            .unwrap();
        assert!(url.tls);
        assert_eq!(url.username.as_deref(), Some("u"));
        assert_eq!(url.password.as_deref(), Some("p@ss:w"));
        assert_eq!((url.service.as_str(), url.db), ("m", 0));
        let url = SentinelUrl::parse("redis+sentinel://:secret@h:1/m/")
            .unwrap()
            .unwrap();
        assert_eq!(
            (url.username, url.password.as_deref()),
            (None, Some("secret"))
        );
        assert!(SentinelUrl::parse("redis://h:6379").is_none());
        let url = SentinelUrl::parse("redis+sentinel://u:hunter2@[::1]:26380,[fe80::1]/m")
            .unwrap()
            .unwrap();
        assert_eq!(
            url.sentinels,
            vec![("::1".into(), 26380), ("fe80::1".into(), 26379)]
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h,,k/m",
            "redis+sentinel://h/m/db",
            "redis+sentinel://h/m/0/extra",
            "redis+sentinel://:pw@/m",
            "redis+sentinel://h/m/-1",
            "redis+sentinel://[::1/m",
            "redis+sentinel://[::1]x/m",
        ] {
            let err = SentinelUrl::parse(bad).unwrap().unwrap_err().to_string();
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
