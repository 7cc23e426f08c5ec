//! `LeaderboardActor` keeps the Redis leaderboards equal to what Postgres's first-solve record
//! says: it sets a user's standings after each first solve (absolute values, so a replay or a
//! duplicate message changes nothing), and rebuilds every board at start and whenever Redis
//! comes back.
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;

use super::health::BackendChanged;
use crate::backends::{Backend, HealthState};
use crate::cache::{ResponseCache, Scope};
use crate::db::models::{Problem, Standing};
use crate::db::{self, PgPool};
use crate::redis::RedisQueue;

pub struct LeaderboardActor {
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub health: Arc<HealthState>,
    pub cache: ResponseCache,
    pub rebuilding: bool,
    /// A rebuild was asked for while one ran (a Redis failover meanwhile, say): run it
    /// again when that one ends, lest what the new master lacks stays missing.
    pub again: bool,
}

/// A user's standings may have changed (a first solve was recorded, or a rejudge changed a
/// verdict): recompute them from Postgres.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Rescore {
    pub user_id: i64,
}

impl LeaderboardActor {
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        if self.rebuilding {
            self.again = true;
            return;
        }
        if !self.health.redis_up() || !self.health.postgres_up() {
            return; // their return asks again
        }
        self.rebuilding = true;
        let (queue, pool, health) = (self.queue.clone(), self.pool.clone(), self.health.clone());
        let cache = self.cache.clone();
        let work = async move {
            let started = Instant::now();
            let snapshot_at = Utc::now();
            let standings = db::run(&pool, Standing::all)
                .await
                .map_err(|e| e.to_string())?;
            let boards = queue.replace_boards(&standings).await.map_err(|e| {
                health.report_failure(Backend::Redis, &e);
                e.to_string()
            })?;
            // Solves recorded while the snapshot was being written: set them again.
            let since = snapshot_at - chrono::Duration::seconds(5);
            for user_id in db::run(&pool, move |c| Standing::changed_since(c, since))
                .await
                .map_err(|e| e.to_string())?
            {
                rescore(&queue, &pool, user_id).await?;
            }
            cache.invalidate(&[Scope::Leaderboards]).await;
            log::info!(
                "leaderboards rebuilt from Postgres: {} standings on {boards} boards in {} ms",
                standings.len(),
                started.elapsed().as_millis()
            );
            Ok::<(), String>(())
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.rebuilding = false;
            // A failed rebuild is tried again too: a backend that went down meanwhile makes
            // it return at once, and asks again when it is back.
            if let Err(e) = result {
                log::warn!("leaderboard rebuild: {e}");
                act.again = true;
            }
            if std::mem::take(&mut act.again) {
                ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                    act.rebuild(ctx)
                });
            }
        }));
    }
}

/// Sets a user's places on every board from Postgres.
async fn rescore(queue: &RedisQueue, pool: &PgPool, user_id: i64) -> Result<(), String> {
    let (standings, topics) = db::run(pool, move |c| {
        Ok((Standing::of_user(c, user_id)?, Problem::topics(c)?))
    })
    .await
    .map_err(|e| e.to_string())?;
    queue
        .set_standings(user_id, &standings, &topics)
        .await
        .map_err(|e| e.to_string())
}

impl Actor for LeaderboardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.rebuild(ctx);
    }
}

impl Supervised for LeaderboardActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.rebuilding = false;
        self.again = false;
    }
}

impl Handler<BackendChanged> for LeaderboardActor {
    type Result = ();

    fn handle(&mut self, msg: BackendChanged, ctx: &mut Context<Self>) {
        if msg.up {
            self.rebuild(ctx);
        }
    }
}

impl Handler<Rescore> for LeaderboardActor {
    type Result = ();

    fn handle(&mut self, Rescore { user_id }: Rescore, ctx: &mut Context<Self>) {
        if !self.health.redis_up() {
            return; // the rebuild when Redis returns covers it
        }
        let (queue, pool) = (self.queue.clone(), self.pool.clone());
        let cache = self.cache.clone();
        ctx.spawn(
            async move {
                let result = rescore(&queue, &pool, user_id).await;
                cache.invalidate(&[Scope::Leaderboards]).await;
                result
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                // Not dropped: a command that timed out while both backends still count as up
                // (a stalled thread) brings no flip, so no rebuild would follow on its own.
                // While one is down, the rebuild waits for its return.
                if let Err(e) = result {
                    if act.health.redis_up() && act.health.postgres_up() {
                        log::warn!("leaderboard update for user {user_id}: {e}; rebuilding");
                    }
                    act.rebuild(ctx);
                }
            }),
        );
    }
}
