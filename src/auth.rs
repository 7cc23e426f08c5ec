//! Password hashing (argon2id) and opaque bearer tokens (stored as SHA-256 hashes).
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Runs password hashing (argon2id: 19 MiB of memory each) on a few threads of its own. On
/// the shared blocking pool, every thread that ever hashed kept its 19 MiB (the allocator
/// keeps freed memory per thread arena): 24 concurrent logins held 637 MiB. Here at most
/// `threads` hashes run at once, the rest wait in line.
pub struct Passwords {
    jobs: std::sync::mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
}

impl Passwords {
    pub fn new(threads: usize) -> std::io::Result<Passwords> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(1024);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("passwords-{i}"))
                .spawn(move || loop {
                    let job = queue.lock().expect("password queue").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the service is gone
                    }
                })?;
        }
        Ok(Passwords { jobs })
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            let _ = done.send(work());
        });
        // A full line (1,024 waiting) refuses rather than queueing without bound.
        self.jobs.try_send(job).ok()?;
        result.await.ok()
    }

    /// A new hash of `password`; `None` when the line is full.
    pub async fn hash(
        &self,
        password: String,
    ) -> Option<Result<String, argon2::password_hash::Error>> {
        self.run(move || hash_password(&password)).await
    }

    /// Whether `password` matches `hash`; without a hash (an unknown user) it hashes anyway,
    /// so timing does not tell. `None` when the line is full.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Option<bool> {
        self.run(move || match hash {
            Some(hash) => verify_password(&password, &hash),
            None => {
                let _ = hash_password(&password);
                false
            }
        })
        .await
    }
}

fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token: 256 bits, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// What is stored for a token: the database never holds a usable credential.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token)
}

/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_differ() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(new_token(), new_token());
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }
}
