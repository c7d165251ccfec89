//! `schedule` (kind `cron`) and `triggers` (kind `job`).

use super::error::ManifestError;
use super::fields::*;
use super::model::*;
use super::timezone::{check_zone, ZoneLookup};
use crate::py::text::split_whitespace;
use crate::yaml::PyInt;

type Result<T> = std::result::Result<T, ManifestError>;

pub(super) fn parse_schedule(
    raw: Val<'_>,
    kind: Kind,
    notices: &mut Vec<String>,
) -> Result<Option<ScheduleConfig>> {
    if kind != Kind::Cron {
        if raw.is_some() {
            return Err(ManifestError::rule(
                "schedule",
                "Manifest field `schedule` is only valid for `kind: cron`.",
            ));
        }
        return Ok(None);
    }
    let schedule = require_mapping(raw, "schedule")?;
    let get = |key: &str| some(schedule.get(key));
    let cron = require_string(get("cron"), "schedule.cron")?;
    if split_whitespace(&cron).len() != 5 {
        return Err(ManifestError::rule(
            "schedule.cron",
            "Manifest field `schedule.cron` must be a POSIX 5-field cron expression.",
        ));
    }
    let timezone =
        optional_string(get("timezone"), "schedule.timezone")?.unwrap_or_else(|| "UTC".into());
    if check_zone(&timezone).map_err(ManifestError::Python)? == ZoneLookup::NotFound {
        notices.push(format!(
            "Manifest field `schedule.timezone` ({}) could not be resolved locally; relying on backend tz database.",
            crate::py::text::repr_str(&timezone)
        ));
    }
    let concurrency = optional_string(get("concurrency"), "schedule.concurrency")?
        .unwrap_or_else(|| "skip".into());
    if !["skip", "queue", "overlap"].contains(&concurrency.as_str()) {
        return Err(ManifestError::one_of(
            "schedule.concurrency",
            "`skip`, `queue`, or `overlap`",
        ));
    }
    let catchup =
        optional_string(get("catchup"), "schedule.catchup")?.unwrap_or_else(|| "run-once".into());
    if !["skip", "run-once", "run-all"].contains(&catchup.as_str()) {
        return Err(ManifestError::one_of(
            "schedule.catchup",
            "`skip`, `run-once`, or `run-all`",
        ));
    }
    let timeout_seconds = optional_int(get("timeout_seconds"), "schedule.timeout_seconds")?;
    validate_positive(timeout_seconds.as_ref(), "schedule.timeout_seconds")?;
    let start_window_seconds =
        optional_int(get("start_window_seconds"), "schedule.start_window_seconds")?;
    validate_positive(
        start_window_seconds.as_ref(),
        "schedule.start_window_seconds",
    )?;
    let retries_value = or_empty(get("retries"));
    let retries = match retries_value {
        None => None,
        Some(r) => Some(require_mapping(Some(r), "schedule.retries")?),
    };
    let (max, backoff_seconds) = match retries {
        None => (PyInt::from(0), None),
        Some(r) => (int_or(r, "max", 0, "schedule.retries.max")?, Some(r)),
    };
    if max.value() < 0.into() {
        return Err(ManifestError::Negative {
            field: "schedule.retries.max".into(),
        });
    }
    let backoff_seconds = match backoff_seconds {
        None => PyInt::from(30),
        Some(r) => int_or(r, "backoff_seconds", 30, "schedule.retries.backoff_seconds")?,
    };
    validate_positive(Some(&backoff_seconds), "schedule.retries.backoff_seconds")?;
    let fanout = match get("fanout") {
        None => None,
        Some(raw) => {
            let fanout = require_mapping(Some(raw), "schedule.fanout")?;
            let count = int_or(fanout, "count", 1, "schedule.fanout.count")?;
            if count.value() < 1.into() {
                return Err(ManifestError::rule(
                    "schedule.fanout.count",
                    "Manifest field `schedule.fanout.count` must be >= 1.",
                ));
            }
            let shard_env =
                optional_string(some(fanout.get("shard_env")), "schedule.fanout.shard_env")?;
            if let Some(name) = &shard_env {
                if !is_env_name(name) {
                    return Err(ManifestError::NotEnvName {
                        field: "schedule.fanout.shard_env".into(),
                    });
                }
            }
            Some(ScheduleFanout { count, shard_env })
        }
    };
    Ok(Some(ScheduleConfig {
        cron,
        timezone,
        concurrency,
        catchup,
        timeout_seconds,
        warm_start: truthy_or(schedule, "warm_start", false),
        start_window_seconds,
        retries: ScheduleRetries {
            max,
            backoff_seconds,
        },
        fanout,
    }))
}

pub(super) fn parse_triggers(raw: Val<'_>, kind: Kind) -> Result<Vec<TriggerConfig>> {
    let raw = or_empty(raw);
    if kind != Kind::Job {
        if raw.is_some() {
            return Err(ManifestError::rule(
                "triggers",
                "Manifest field `triggers` is only valid for `kind: job`.",
            ));
        }
        return Ok(Vec::new());
    }
    let items = match raw {
        Some(list) if list.is_list_like() => list.elements(),
        _ => {
            return Err(ManifestError::rule(
                "triggers",
                "Manifest field `triggers` must contain at least one trigger for `kind: job`.",
            ))
        }
    };
    let mut triggers = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = |name: &str| format!("triggers[{index}].{name}");
        let trigger = require_mapping(Some(item), &format!("triggers[{index}]"))?;
        let get = |key: &str| some(trigger.get(key));
        let trigger_type = require_string(get("type"), &field("type"))?;
        if trigger_type != "manual" && trigger_type != "webhook" {
            return Err(ManifestError::rule(
                &field("type"),
                "Manifest field `triggers[].type` must be `manual` or `webhook` in this CLI version.",
            ));
        }
        let auth = optional_string(get("auth"), &field("auth"))?.unwrap_or_else(|| "none".into());
        if !["none", "api_key", "hmac"].contains(&auth.as_str()) {
            return Err(ManifestError::one_of(
                "triggers[].auth",
                "`none`, `api_key`, or `hmac`",
            ));
        }
        let timeout_seconds = optional_int(get("timeout_seconds"), &field("timeout_seconds"))?;
        validate_positive(timeout_seconds.as_ref(), &field("timeout_seconds"))?;
        let concurrency = optional_int(
            get("concurrency_per_account"),
            &field("concurrency_per_account"),
        )?;
        validate_positive(concurrency.as_ref(), &field("concurrency_per_account"))?;
        let path = optional_string(get("path"), &field("path"))?;
        if trigger_type == "webhook" {
            match &path {
                None => {
                    return Err(ManifestError::rule(
                        &field("path"),
                        format!(
                        "Manifest field `triggers[{index}].path` is required for webhook triggers."
                    ),
                    ))
                }
                Some(p) if !p.starts_with('/') => {
                    return Err(ManifestError::rule(
                        &field("path"),
                        format!("Manifest field `triggers[{index}].path` must start with `/`."),
                    ))
                }
                Some(_) => {}
            }
        }
        triggers.push(TriggerConfig {
            kind: trigger_type,
            path,
            auth,
            timeout_seconds,
            concurrency_per_account: concurrency,
        });
    }
    Ok(triggers)
}
