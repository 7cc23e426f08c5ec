//! Leaderboards: from Redis, or from Postgres while Redis is unavailable.
use std::collections::{BTreeMap, HashMap};

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::page;
use crate::backends::Backend;
use crate::cache::Scope;
use crate::catalog::check_topic;
use crate::db;
use crate::db::models::{Problem, RankedRow, User};
use crate::error::responses;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/leaderboard/global", web::get().to(global))
        .route("/leaderboard/topic/{topic}", web::get().to(topic))
        .route("/leaderboard/user/{id}", web::get().to(user));
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BoardPage {
    entries: Vec<Entry>,
    /// Users on the board.
    total: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserStanding {
    user_id: i64,
    username: String,
    global: Place,
    topics: BTreeMap<String, Place>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Entry {
    rank: i64,
    user_id: i64,
    username: Option<String>,
    score: i64,
}

/// A place on one board; `rank` is null for a user with no solve there.
#[derive(Serialize, ToSchema)]
pub(crate) struct Place {
    rank: Option<i64>,
    score: i64,
}

impl Place {
    fn from(found: Option<(i64, i64)>) -> Place {
        match found {
            Some((rank, score)) => Place {
                rank: Some(rank),
                score,
            },
            None => Place {
                rank: None,
                score: 0,
            },
        }
    }
}

#[utoipa::path(
    get,
    path = "/leaderboard/global",
    tag = "leaderboards",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the global board", body = BoardPage),
        responses::Invalid,
        responses::Unavailable,
    )
)]
pub(crate) async fn global(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    cached_board(&state, None, &query).await
}

#[utoipa::path(
    get,
    path = "/leaderboard/topic/{topic}",
    tag = "leaderboards",
    params(("topic" = String, Path, description = "Topic"), PageQuery),
    responses(
        (status = 200, description = "A page of one topic's board", body = BoardPage),
        responses::Invalid,
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn topic(
    state: web::Data<AppState>,
    topic: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let topic = topic.into_inner();
    check_topic(&topic)?;
    if state.health.postgres_up() {
        let topics = db::run(&state.pool, Problem::topics).await?;
        if !topics.contains(&topic) {
            return Err(ApiError::NotFound("topic"));
        }
    }
    cached_board(&state, Some(&topic), &query).await
}

async fn cached_board(
    state: &AppState,
    topic: Option<&str>,
    query: &PageQuery,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(query.limit, query.offset, 10, 100)?;
    let key = match topic {
        None => format!("global:{limit}:{offset}"),
        Some(t) => format!("topic:{limit}:{offset}:{t}"),
    };
    // A page past the end is empty whatever its offset: not worth a key per offset.
    state
        .cache
        .json_if(
            Scope::Leaderboards,
            &key,
            || board(state, topic, limit, offset),
            |page| offset == 0 || offset < page.total,
        )
        .await
}

async fn board(
    state: &AppState,
    topic: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<BoardPage, ApiError> {
    if state.health.redis_up() {
        match state.queue.board_page(topic, limit, offset).await {
            Ok((rows, total)) => {
                let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
                // Names are Postgres's; while it is down the board still answers, without them.
                let names: HashMap<i64, String> = if state.health.postgres_up() {
                    db::run(&state.pool, move |c| User::names(c, &ids))
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .collect()
                } else {
                    HashMap::new()
                };
                let entries: Vec<Entry> = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, (user_id, score))| Entry {
                        rank: offset + i as i64 + 1,
                        user_id,
                        username: names.get(&user_id).cloned(),
                        score,
                    })
                    .collect();
                return Ok(BoardPage { entries, total });
            }
            Err(e) => state.health.report_failure(Backend::Redis, e),
        }
    }
    let topic_owned = topic.map(str::to_string);
    let (rows, total) = db::run(&state.pool, move |c| {
        RankedRow::page(c, topic_owned.as_deref(), limit, offset)
    })
    .await?;
    let entries: Vec<Entry> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| Entry {
            rank: offset + i as i64 + 1,
            user_id: r.user_id,
            username: Some(r.username),
            score: r.score,
        })
        .collect();
    Ok(BoardPage { entries, total })
}

#[utoipa::path(
    get,
    path = "/leaderboard/user/{id}",
    tag = "leaderboards",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "A user's places", body = UserStanding),
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn user(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let user_id = id.into_inner();
    state
        .cache
        .json(Scope::Leaderboards, &format!("user:{user_id}"), || {
            user_places(&state, user_id)
        })
        .await
}

async fn user_places(state: &AppState, user_id: i64) -> Result<UserStanding, ApiError> {
    let (user, topics) = db::run(&state.pool, move |c| {
        Ok((User::find(c, user_id)?, Problem::topics(c)?))
    })
    .await?;
    let user = user.ok_or(ApiError::NotFound("user"))?;
    let boards: Vec<Option<&str>> = std::iter::once(None)
        .chain(topics.iter().map(|t| Some(t.as_str())))
        .collect();
    let mut places = None;
    if state.health.redis_up() {
        match state.queue.board_places(user_id, &boards).await {
            Ok(found) => places = Some(found),
            Err(e) => state.health.report_failure(Backend::Redis, e),
        }
    }
    let places = match places {
        Some(p) => p,
        None => {
            let owned: Vec<Option<String>> = boards.iter().map(|b| b.map(str::to_string)).collect();
            db::run(&state.pool, move |c| {
                owned
                    .iter()
                    .map(|t| RankedRow::of_user(c, t.as_deref(), user_id))
                    .collect::<diesel::QueryResult<Vec<_>>>()
            })
            .await?
        }
    };
    let mut places = places.into_iter();
    let global = Place::from(places.next().flatten());
    let topics = topics
        .into_iter()
        .zip(places)
        .map(|(t, p)| (t, Place::from(p)))
        .collect();
    Ok(UserStanding {
        user_id: user.id,
        username: user.username,
        global,
        topics,
    })
}
