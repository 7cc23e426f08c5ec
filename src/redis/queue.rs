//! The job queue: waiting, parked and in-flight jobs, leases and their state.
use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncCommands, Direction, RedisResult, Script};
use uuid::Uuid;

use super::RedisQueue;
use super::Unpersisted;
use crate::job::{progress_event, submission_event, Job, Status, SubmissionResult};

/// A job's end, for `RedisQueue::complete_all`.
pub struct Completion<'a> {
    /// The job's in-flight list item.
    pub item: &'a str,
    pub result: &'a SubmissionResult,
    /// The outcome, kept until Postgres takes it.
    pub unrecorded: Option<&'a Unpersisted>,
    /// (fingerprint, outcome) for the verdict cache.
    pub verdict: Option<(&'a str, &'a crate::job::Outcome)>,
}

/// A job `RedisQueue::take` took.
pub struct Taken {
    /// The in-flight list item.
    pub item: String,
    /// How many times it has been taken, this time included; `None`: not started, a job
    /// whose id the script could not read (call `RedisQueue::start`).
    pub attempts: Option<u32>,
    /// Its `running` event is published.
    pub announced: bool,
    /// Live jobs were still waiting after it (for `JobSource::take_ahead`).
    pub more: bool,
}

/// The state of a job Redis knows as not finished.
#[derive(Debug, Clone)]
pub struct Processing {
    pub status: Status,
    pub user_id: i64,
    pub problem_id: i64,
    pub submitted_at: chrono::DateTime<chrono::Utc>,
}

/// Lua shared by the fair-queue scripts: a job's user, and how many live jobs each user has in
/// flight. A job's JSON names `user_id` before the solution's text, and any quote inside that
/// text is escaped, so the first match is the real field.
const FAIR_PRELUDE: &str = r#"
local function user_of(job)
  if string.find(job, '"rejudge":true', 1, true) then return nil end
  return string.match(job, '"user_id":(%-?%d+)')
end
-- Starts a job's lease as `RedisQueue::start` does (the event aside): its attempts, or 0
-- when its id cannot be read (the caller then starts it). A job's JSON begins with its id.
local function start(job, lease_prefix, processing_prefix, lease_ms, status)
  local id = string.match(job, '^{"job_id":"([%x%-]+)"')
  if not id then return 0 end
  redis.call('SET', lease_prefix .. id, 1, 'PX', lease_ms)
  redis.call('HSET', processing_prefix .. id, 'status', status)
  return redis.call('HINCRBY', processing_prefix .. id, 'attempts', 1)
end
-- Publishes a started job's `running` event (`progress_event`, filled in from the job's
-- JSON: its fields before the solution's text, and `submitted_at` after it, which no escaped
-- text can fake): 1, or 0 when a field does not read as expected (the caller publishes it).
local function announce(job, channel)
  local fields = {
    id = string.match(job, '^{"job_id":"([%x%-]+)"'),
    user = string.match(job, '"user_id":(%-?%d+)'),
    problem = string.match(job, '"problem_id":(%-?%d+)'),
    at = string.match(job, '"submitted_at":"([%w%-:%.+]+)"'),
  }
  if not (fields.id and fields.user and fields.problem and fields.at) then return 0 end
  redis.call('PUBLISH', channel, (string.gsub(RUNNING_EVENT, '@(%a+)@', fields)))
  return 1
end
local function running(inflight)
  local counts = {}
  for _, job in ipairs(redis.call('LRANGE', inflight, 0, -1)) do
    local u = user_of(job)
    if u then counts[u] = (counts[u] or 0) + 1 end
  end
  return counts
end
"#;

/// Takes the next job into the in-flight list: first the parked job submitted first among
/// users below their limit (each user's parked jobs go oldest first), then live jobs oldest
/// first, parking those of users at their limit, then background work, and starts the job
/// taken.
/// Returns `{'job', item, attempts, announced, more}` (see `start` and `announce`; `more`: live
/// jobs are still waiting), `{'more'}` (only parked so far; call again) or `{}`. Jobs the
/// caller graded and handed over to be recorded move to the recording list first, unless
/// recorded already.
/// KEYS: queue, background queue, in-flight, parked users, recording; ARGV: limit, pops,
/// parked prefix, how many jobs were handed over, then `start`'s lease prefix, processing
/// prefix, lease ms and status, then the events channel, then the handed-over items.
const FAIR_TAKE: &str = r#"
local function taken(job, live)
  local attempts = start(job, ARGV[5], ARGV[6], ARGV[7], ARGV[8])
  local announced = attempts > 0 and announce(job, ARGV[9]) or 0
  local more = live and redis.call('LLEN', KEYS[1]) > 0 and 1 or 0
  return {'job', job, tostring(attempts), tostring(announced), tostring(more)}
end
for i = 10, 9 + tonumber(ARGV[4]) do
  if redis.call('LREM', KEYS[3], 1, ARGV[i]) == 1 then redis.call('LPUSH', KEYS[5], ARGV[i]) end
end
local limit = tonumber(ARGV[1])
local counts = running(KEYS[3])
-- A parked job reached the head of the line before any job still queued: of users below the
-- limit, the one submitted first is taken. Users at the limit are passed over at no cost (one
-- whose list is gone leaves the set when next below the limit).
local function arrival(job)
  local at = string.match(job, '"submitted_at":"([%w%-:%.+]+)"') or ''
  local whole, fraction = string.match(at, '^([^.Z+]+)%.?(%d*)')
  if not whole then return '~' end
  return whole .. fraction .. string.rep('0', 9 - #fraction)
end
local pick, oldest
for _, u in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if (counts[u] or 0) < limit then
    local job = redis.call('LINDEX', ARGV[3] .. u, -1)
    if job then
      local at = arrival(job)
      if not pick or at < oldest then pick, oldest = u, at end
    else
      redis.call('SREM', KEYS[4], u)
    end
  end
end
if pick then
  local key = ARGV[3] .. pick
  local job = redis.call('RPOP', key)
  if redis.call('LLEN', key) == 0 then redis.call('SREM', KEYS[4], pick) end
  redis.call('LPUSH', KEYS[3], job)
  return taken(job, true)
end
for _ = 1, tonumber(ARGV[2]) do
  local job = redis.call('RPOP', KEYS[1])
  if not job then break end
  local u = user_of(job)
  if not u or (counts[u] or 0) < limit then
    redis.call('LPUSH', KEYS[3], job)
    return taken(job, true)
  end
  redis.call('LPUSH', ARGV[3] .. u, job)
  redis.call('SADD', KEYS[4], u)
end
if redis.call('LLEN', KEYS[1]) > 0 then return {'more'} end
local job = redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT')
if job then return taken(job, false) end
return {}
"#;

/// Live jobs waiting (queued and parked), background jobs waiting, jobs in flight (being
/// recorded included).
/// KEYS: queue, background queue, in-flight, parked users, recording; ARGV: parked prefix.
const DEPTHS: &str = r#"
local live = redis.call('LLEN', KEYS[1])
for _, u in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  live = live + redis.call('LLEN', ARGV[1] .. u)
end
return {live, redis.call('LLEN', KEYS[2]), redis.call('LLEN', KEYS[3]) + redis.call('LLEN', KEYS[5])}
"#;

static FAIR_TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "local RUNNING_EVENT = [==[{}]==]\n{FAIR_PRELUDE}{FAIR_TAKE}",
        running_event_template()
    ))
});

/// `progress_event(job, Running)` with `@id@`, `@user@`, `@problem@` and `@at@` where the
/// job's fields go: the take script fills it in, so the event is the one Rust would publish.
fn running_event_template() -> String {
    let at = chrono::DateTime::from_timestamp_micros(981_173_106_789_012).expect("in range");
    let job = Job {
        job_id: Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001),
        user_id: 7_130_000_000_000_001,
        problem_id: 7_130_000_000_000_002,
        sql: String::new(),
        request_id: None,
        submitted_at: at,
        rejudge: false,
    };
    let mut event = progress_event(&job, Status::Running);
    for (value, name) in [
        (job.job_id.to_string(), "id"),
        (job.user_id.to_string(), "user"),
        (job.problem_id.to_string(), "problem"),
        (
            serde_json::to_value(at)
                .expect("serialises")
                .as_str()
                .expect("a string")
                .to_string(),
            "at",
        ),
    ] {
        assert_eq!(event.matches(&value).count(), 1, "{value} in {event}");
        event = event.replace(&value, &format!("@{name}@"));
    }
    event
}

/// KEYS: recording, in-flight; ARGV: items.
const FORGET_TAKEN: &str = r"
for _, item in ipairs(ARGV) do
  if redis.call('LREM', KEYS[1], 1, item) == 0 then redis.call('LREM', KEYS[2], 1, item) end
end";

/// Puts a live job back next in line: at the head of the queue, or, while its user has parked
/// jobs (taken before the queue), at the oldest end of them. KEYS: parked users, the user's
/// parked list, queue; ARGV: user, item.
const NEXT_IN_LINE: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
else
  redis.call('RPUSH', KEYS[3], ARGV[2])
end";

/// Puts an in-flight (or recording) job back in the queue, behind waiting work, unless its
/// lease is still held. KEYS: in-flight, queue, lease, recording.
const REQUEUE_IF_NO_LEASE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 or redis.call('LREM', KEYS[4], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0";

impl RedisQueue {
    /// Queues jobs and records them as queued, atomically.
    pub async fn enqueue_all(&self, jobs: &[Job]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in jobs {
            pipe.hset_multiple(
                self.keys.processing(job.job_id),
                &[
                    ("status", Status::Queued.as_str().to_string()),
                    ("user_id", job.user_id.to_string()),
                    ("problem_id", job.problem_id.to_string()),
                    ("submitted_at", job.submitted_at.to_rfc3339()),
                ],
            )
            .ignore()
            .lpush(
                self.keys.queue_for(job),
                serde_json::to_string(job).expect("job serialises"),
            )
            .ignore()
            .publish(self.keys.events(), progress_event(job, Status::Queued))
            .ignore();
            if let Some(request_id) = &job.request_id {
                pipe.set_ex(
                    self.keys.request(job.user_id, request_id),
                    job.job_id.to_string(),
                    86_400,
                )
                .ignore();
            }
        }
        pipe.query_async(&mut self.conn()).await
    }

    pub async fn enqueue(&self, job: &Job) -> RedisResult<()> {
        self.enqueue_all(std::slice::from_ref(job)).await
    }

    /// The job a user's `request_id` already created (within 24 h), if Redis knows it.
    pub async fn request(&self, user_id: i64, request_id: &str) -> RedisResult<Option<Uuid>> {
        let id: Option<String> = self
            .conn()
            .get(self.keys.request(user_id, request_id))
            .await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// Waits for a job (`None` after `block`'s time with none arriving, at once when `block` is
    /// `None`; one that another executor took first starts the wait again), then moves it to
    /// the in-flight list, starts it under a `lease` (`start`) and publishes its `running`
    /// event, in one script (`Taken`). A user never has more than `per_user` live jobs in
    /// flight while other users' jobs wait; `handed`, the items of jobs graded and being
    /// recorded, no longer count.
    /// `before_script` runs right before each call of the script; what `block`'s function
    /// returns is kept while the take waits for a job to arrive, and then until the script's
    /// try to take it is answered (another caller may take it first meanwhile).
    pub async fn take<W>(
        &self,
        conn: &mut MultiplexedConnection,
        block: Option<(Duration, impl Fn() -> W)>,
        per_user: u32,
        lease: Duration,
        mut handed: &[String],
        mut before_script: impl FnMut(),
    ) -> RedisResult<Option<Taken>> {
        let parked = self.keys.parked("");
        let started = |attempts: &str| attempts.parse().ok().filter(|&n| n > 0);
        let start_args = [
            self.keys.lease_prefix(),
            self.keys.processing_prefix(),
            lease.as_millis().to_string(),
            Status::Running.as_str().to_string(),
            self.keys.events(),
        ];
        let mut woken = None;
        loop {
            before_script();
            let taken: Vec<String> = FAIR_TAKE_SCRIPT
                .key(self.keys.queue())
                .key(self.keys.queue_low())
                .key(self.keys.inflight())
                .key(self.keys.parked_users())
                .key(self.keys.recording())
                .arg(per_user)
                .arg(64)
                .arg(&parked)
                .arg(handed.len())
                .arg(&start_args)
                .arg(std::mem::take(&mut handed))
                .invoke_async(conn)
                .await?;
            drop(woken.take());
            match taken.as_slice() {
                [kind, item, attempts, announced, more] if kind == "job" => {
                    return Ok(Some(Taken {
                        item: item.clone(),
                        attempts: started(attempts),
                        announced: announced == "1",
                        more: more == "1",
                    }))
                }
                [_, ..] => continue,
                [] => {}
            }
            let Some((block, waiting)) = &block else {
                return Ok(None);
            };
            let counted = waiting();
            // Nothing to take: wait for a live submission (never behind background work;
            // background jobs are picked up within `block`), then take it with the script
            // above. The wait moves the oldest job from the queue's right end to that same end,
            // which leaves the queue as it was: a job is in flight only once it is taken and
            // started, in one step. Every idle executor wakes (and the wait's no-op move is
            // written to the AOF and replicas once for each); all but one find nothing.
            let woke: Option<String> = conn
                .blmove(
                    self.keys.queue(),
                    self.keys.queue(),
                    Direction::Right,
                    Direction::Right,
                    block.as_secs_f64(),
                )
                .await?;
            if woke.is_none() {
                return Ok(None);
            }
            woken = Some(counted);
        }
    }

    /// Marks a taken job as running under a lease; returns how many times it was taken.
    pub async fn start(&self, job: &Job, lease: Duration) -> RedisResult<u32> {
        let job_id = job.job_id;
        let (attempts,): (u32,) = redis::pipe()
            .atomic()
            .pset_ex(self.keys.lease(job_id), 1, lease.as_millis() as u64)
            .ignore()
            .hset(
                self.keys.processing(job_id),
                "status",
                Status::Running.as_str(),
            )
            .ignore()
            .hincr(self.keys.processing(job_id), "attempts", 1)
            .publish(self.keys.events(), progress_event(job, Status::Running))
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(attempts)
    }

    /// Keeps the lease of a job being graded alive.
    pub async fn renew(&self, job_id: Uuid, lease: Duration) -> RedisResult<()> {
        self.conn()
            .pset_ex(self.keys.lease(job_id), 1, lease.as_millis() as u64)
            .await
    }

    /// Publishes the final result of a background job (a rejudge) and forgets its queue state,
    /// atomically: `complete_all` for one.
    pub async fn complete(&self, item: &str, result: &SubmissionResult) -> RedisResult<()> {
        self.complete_all(&[Completion {
            item,
            result,
            unrecorded: None,
            verdict: None,
        }])
        .await
    }

    /// Publishes jobs' final results and forgets their queue state, in one atomic pipeline.
    pub async fn complete_all(&self, jobs: &[Completion<'_>]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in jobs {
            let job_id = job.result.job_id;
            if let Some(record) = job.unrecorded {
                let json = serde_json::to_string(record).expect("serialises");
                pipe.hset(self.keys.unpersisted(), job_id.to_string(), json)
                    .ignore();
            }
            if let Some((fingerprint, outcome)) = job.verdict {
                pipe.set_ex(
                    self.keys.verdict(fingerprint),
                    serde_json::to_string(outcome).expect("outcome serialises"),
                    self.verdict_ttl_secs,
                )
                .ignore();
            }
            let result_json = serde_json::to_string(job.result).expect("result serialises");
            pipe.set_ex(self.keys.result(job_id), result_json, self.result_ttl_secs)
                .ignore()
                .publish(self.keys.events(), submission_event(job.result))
                .ignore()
                .del(&[self.keys.processing(job_id), self.keys.lease(job_id)])
                .ignore();
        }
        // One script call for the whole batch: each call costs Redis more than its two LREMs.
        let items: Vec<&str> = jobs.iter().map(|job| job.item).collect();
        self.forget_taken(&mut pipe, &items);
        pipe.query_async(&mut self.conn()).await
    }

    /// Removes each taken job's item from the recording list, else from the in-flight one: one
    /// copy (a job delivered twice has two, one per taker).
    fn forget_taken(&self, pipe: &mut redis::Pipeline, items: &[&str]) {
        pipe.cmd("EVAL")
            .arg(FORGET_TAKEN)
            .arg(2)
            .arg(self.keys.recording())
            .arg(self.keys.inflight())
            .arg(items)
            .ignore();
    }

    /// Hands a taken job back, and publishes its `queued` event. `counted`: the try was an
    /// attempt (the solution reached the sandbox), and the job waits behind the jobs waiting
    /// now; otherwise (the sandbox was unreachable, or it was taken ahead) it keeps its place,
    /// next in line (`NEXT_IN_LINE`).
    pub async fn release(&self, item: &str, job: &Job, counted: bool) -> RedisResult<()> {
        let job_id = job.job_id;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.keys.lease(job_id))
            .ignore()
            .hset(
                self.keys.processing(job_id),
                "status",
                Status::Queued.as_str(),
            )
            .ignore();
        self.forget_taken(&mut pipe, &[item]);
        pipe.publish(self.keys.events(), progress_event(job, Status::Queued))
            .ignore();
        if counted {
            pipe.lpush(self.keys.queue_for(job), item).ignore();
        } else {
            if job.rejudge {
                pipe.rpush(self.keys.queue_for(job), item).ignore();
            } else {
                pipe.cmd("EVAL")
                    .arg(NEXT_IN_LINE)
                    .arg(3)
                    .arg(self.keys.parked_users())
                    .arg(self.keys.parked(&job.user_id.to_string()))
                    .arg(self.keys.queue())
                    .arg(job.user_id)
                    .arg(item)
                    .ignore();
            }
            pipe.hincr(self.keys.processing(job_id), "attempts", -1)
                .ignore();
        }
        pipe.query_async(&mut self.conn()).await
    }

    /// Drops an item that is not a job at all (never produced by us).
    pub async fn discard(&self, item: &str) -> RedisResult<()> {
        self.conn().lrem(self.keys.inflight(), 1, item).await
    }

    /// Jobs in flight (or being recorded) whose lease is missing.
    pub async fn unleased(&self) -> RedisResult<Vec<(String, Job)>> {
        let (inflight, recording): (Vec<String>, Vec<String>) = redis::pipe()
            .lrange(self.keys.inflight(), 0, -1)
            .lrange(self.keys.recording(), 0, -1)
            .query_async(&mut self.conn())
            .await?;
        let mut orphans = Vec::new();
        for item in inflight.into_iter().chain(recording) {
            let Ok(job) = serde_json::from_str::<Job>(&item) else {
                continue;
            };
            let leased: bool = self.conn().exists(self.keys.lease(job.job_id)).await?;
            if !leased {
                orphans.push((item, job));
            }
        }
        Ok(orphans)
    }

    /// Requeues an in-flight job whose lease is (still) missing; true if it was.
    pub async fn requeue_unleased(&self, item: &str, job: &Job) -> RedisResult<bool> {
        Script::new(REQUEUE_IF_NO_LEASE)
            .key(self.keys.inflight())
            .key(self.keys.queue_for(job))
            .key(self.keys.lease(job.job_id))
            .key(self.keys.recording())
            .arg(item)
            .invoke_async(&mut self.conn())
            .await
    }

    /// (waiting live, parked included; waiting in the background; in flight)
    pub async fn depths(&self) -> RedisResult<(u64, u64, u64)> {
        Script::new(DEPTHS)
            .key(self.keys.queue())
            .key(self.keys.queue_low())
            .key(self.keys.inflight())
            .key(self.keys.parked_users())
            .key(self.keys.recording())
            .arg(self.keys.parked(""))
            .invoke_async(&mut self.conn())
            .await
    }

    pub async fn processing(&self, job_id: Uuid) -> RedisResult<Option<Processing>> {
        let fields: std::collections::HashMap<String, String> =
            self.conn().hgetall(self.keys.processing(job_id)).await?;
        let field = |name: &str| fields.get(name).and_then(|v| v.parse().ok());
        let submitted_at = fields
            .get("submitted_at")
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok());
        let status = fields.get("status").and_then(|s| Status::parse(s));
        Ok(
            match (status, field("user_id"), field("problem_id"), submitted_at) {
                (Some(status), Some(user_id), Some(problem_id), Some(at)) => Some(Processing {
                    status,
                    user_id,
                    problem_id,
                    submitted_at: at.with_timezone(&chrono::Utc),
                }),
                _ => None,
            },
        )
    }

    /// Whether Redis still knows this job (queued, running, or finished recently).
    pub async fn knows(&self, job_id: Uuid) -> RedisResult<bool> {
        let n: u32 = self
            .conn()
            .exists(&[self.keys.processing(job_id), self.keys.result(job_id)])
            .await?;
        Ok(n > 0)
    }
}
