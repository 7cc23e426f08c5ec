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

/// Lua shared by the queue's scripts. A job's fields are read from its JSON as serde writes a
/// `Job`: `job_id` (a UUID, 36 characters), `user_id` and `problem_id` first, then the
/// solution's text, then `submitted_at`, then `rejudge`, last and only when true. Any quote
/// inside text is escaped, so no text can fake a field. `count` keeps each user's number of
/// live jobs in flight (`Keys::inflight_users`): every script that moves a job into or out of
/// the in-flight list counts it with `user_of`, as `RECOUNT` does. Numbers go to
/// `redis.call` as strings: Redis prints a Lua number with `snprintf("%.17g")`, which costs more
/// than most commands.
const JOB_LUA: &str = r#"
local function user_of(job)
  if string.sub(job, -16) == ',"rejudge":true}' then return nil end
  return string.match(job, '^,"user_id":(%-?%d+)', 49)
end
local function submitted_at(job)
  local from = string.find(job, '"submitted_at":"', math.max(1, #job - 80), true)
  return from and string.match(job, '^([%w%-:%.+]+)"', from + 16)
end
local function count(users, u, by)
  if u and redis.call('HINCRBY', users, u, by) <= 0 then redis.call('HDEL', users, u) end
end
"#;

/// Lua of the take script: starting a job and announcing it.
const TAKE_LUA: &str = r#"
-- Starts a job's lease as `RedisQueue::start` does (the event aside): its attempts.
local function start(id, lease_prefix, processing_prefix, lease_ms, status)
  redis.call('SET', lease_prefix .. id, '1', 'PX', lease_ms)
  redis.call('HSET', processing_prefix .. id, 'status', status)
  return redis.call('HINCRBY', processing_prefix .. id, 'attempts', '1')
end
-- Publishes a started job's `running` event (`progress_event`, filled in from the job's
-- fields): '1', or '0' when a field does not read as expected (the caller publishes it).
local function announce(job, id, channel)
  local user, problem = string.match(job, '^,"user_id":(%-?%d+),"problem_id":(%-?%d+)', 49)
  local at = submitted_at(job)
  if not (user and problem and at) then return '0' end
  redis.call('PUBLISH', channel, running_event(id, user, problem, at))
  return '1'
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
/// KEYS: queue, background queue, in-flight, parked users, recording, in-flight users; ARGV:
/// limit, pops, parked prefix, how many jobs were handed over, then `start`'s lease prefix,
/// processing prefix, lease ms and status, then the events channel, then the handed-over
/// items.
const FAIR_TAKE: &str = r#"
-- Moves a job to the in-flight list and starts it: `attempts` 0 when its id cannot be read
-- (the caller then starts it and publishes its event).
local function taken(job, live)
  redis.call('LPUSH', KEYS[3], job)
  count(KEYS[6], user_of(job), '1')
  local id = string.match(job, '^{"job_id":"([%x%-]+)"')
  local attempts = id and start(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8]) or 0
  local announced = id and announce(job, id, ARGV[9]) or '0'
  local more = live and redis.call('LLEN', KEYS[1]) > 0 and '1' or '0'
  return {'job', job, attempts, announced, more}
end
for i = 10, 9 + tonumber(ARGV[4]) do
  if redis.call('LREM', KEYS[3], '1', ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[5], ARGV[i])
    count(KEYS[6], user_of(ARGV[i]), '-1')
  end
end
local limit = tonumber(ARGV[1])
local counts = {}
local flat = redis.call('HGETALL', KEYS[6])
for i = 1, #flat, 2 do counts[flat[i]] = tonumber(flat[i + 1]) end
-- A parked job reached the head of the line before any job still queued: of users below the
-- limit, the one submitted first is taken. Users at the limit are passed over at no cost (one
-- whose list is gone leaves the set when next below the limit).
local function arrival(job)
  local whole, fraction = string.match(submitted_at(job) or '', '^([^.Z+]+)%.?(%d*)')
  if not whole then return '~' end
  return whole .. fraction .. string.rep('0', 9 - #fraction)
end
local pick, oldest
for _, u in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if (counts[u] or 0) < limit then
    local job = redis.call('LINDEX', ARGV[3] .. u, '-1')
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
  return taken(job, true)
end
for _ = 1, tonumber(ARGV[2]) do
  local job = redis.call('RPOP', KEYS[1])
  if not job then break end
  local u = user_of(job)
  if not u or (counts[u] or 0) < limit then return taken(job, true) end
  redis.call('LPUSH', ARGV[3] .. u, job)
  redis.call('SADD', KEYS[4], u)
end
if redis.call('LLEN', KEYS[1]) > 0 then return {'more'} end
local job = redis.call('RPOP', KEYS[2])
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
        "{}{JOB_LUA}{TAKE_LUA}{FAIR_TAKE}",
        running_event_lua()
    ))
});

/// `progress_event(job, Running)` as a Lua function of the job's fields, `running_event(id,
/// user, problem, at)`: the event Rust would publish, as literal pieces joined around them
/// (one concatenation; `string.gsub` over a template costs several times as much).
fn running_event_lua() -> String {
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
    let event = progress_event(&job, Status::Running);
    let mut fields: Vec<(usize, usize, &str)> = [
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
    ]
    .into_iter()
    .map(|(value, name)| {
        assert_eq!(event.matches(&value).count(), 1, "{value} in {event}");
        (event.find(&value).expect("found"), value.len(), name)
    })
    .collect();
    fields.sort();
    let literal = |text: &str| {
        assert!(!text.contains("]==]") && !text.starts_with('\n'), "{text}");
        format!("[==[{text}]==]")
    };
    let (mut pieces, mut from) = (Vec::new(), 0);
    for (at, len, name) in fields {
        pieces.push(literal(&event[from..at]));
        pieces.push(name.to_string());
        from = at + len;
    }
    pieces.push(literal(&event[from..]));
    format!(
        "local function running_event(id, user, problem, at) return {} end\n",
        pieces.join(" .. ")
    )
}

/// KEYS: recording, in-flight, in-flight users; ARGV: items.
static FORGET_TAKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{JOB_LUA}{}",
        r"
for _, item in ipairs(ARGV) do
  if redis.call('LREM', KEYS[1], '1', item) == 0 and redis.call('LREM', KEYS[2], '1', item) == 1 then
    count(KEYS[3], user_of(item), '-1')
  end
end"
    )
});

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
/// lease is still held. KEYS: in-flight, queue, lease, recording, in-flight users.
static REQUEUE_IF_NO_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{JOB_LUA}{}",
        r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('LREM', KEYS[1], '1', ARGV[1]) == 1 then
  count(KEYS[5], user_of(ARGV[1]), '-1')
elseif redis.call('LREM', KEYS[4], '1', ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1"
    ))
});

/// Counts each user's live jobs in flight again, from the list, and writes the counts only
/// where they differ (nothing then goes to the AOF and replicas). KEYS: in-flight, in-flight
/// users.
static RECOUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{JOB_LUA}{}",
        r"
local counts = {}
for _, job in ipairs(redis.call('LRANGE', KEYS[1], '0', '-1')) do
  local u = user_of(job)
  if u then counts[u] = (counts[u] or 0) + 1 end
end
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do
  local u, n = flat[i], tonumber(flat[i + 1])
  if not counts[u] then
    redis.call('HDEL', KEYS[2], u)
  elseif counts[u] == n then
    counts[u] = nil
  end
end
for u, n in pairs(counts) do redis.call('HSET', KEYS[2], u, tostring(n)) end"
    ))
});

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
                .key(self.keys.inflight_users())
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
            .arg(FORGET_TAKEN.as_str())
            .arg(3)
            .arg(self.keys.recording())
            .arg(self.keys.inflight())
            .arg(self.keys.inflight_users())
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
        let mut pipe = redis::pipe();
        self.forget_taken(&mut pipe, &[item]);
        pipe.query_async(&mut self.conn()).await
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
        REQUEUE_IF_NO_LEASE
            .key(self.keys.inflight())
            .key(self.keys.queue_for(job))
            .key(self.keys.lease(job.job_id))
            .key(self.keys.recording())
            .key(self.keys.inflight_users())
            .arg(item)
            .invoke_async(&mut self.conn())
            .await
    }

    /// Counts each user's live jobs in flight again (see `Keys::inflight_users`), correcting
    /// whatever a script stopped half-way by an error, or an older version, left behind.
    pub async fn recount_inflight(&self) -> RedisResult<()> {
        RECOUNT
            .key(self.keys.inflight())
            .key(self.keys.inflight_users())
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
