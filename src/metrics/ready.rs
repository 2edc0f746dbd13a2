//! `/readyz`: ready when the pooler is accepting clients and every configured
//! pool can reach its database, judged without opening a server connection
//! per probe:
//!
//! 1. a pool with a live server connection (idle or lent) is fine;
//! 2. so is one whose last server login succeeded within [`FRESH`] and was not
//!    followed by a failed one;
//! 3. otherwise one login is tried (at most [`PROBE_TIMEOUT`]) and its result
//!    is reused for [`PROBE_CACHE`]; concurrent probes of a pool share it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::pool::Pool;
use crate::pooler::{Control, Phase};

pub const FRESH: Duration = Duration::from_secs(60);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const PROBE_CACHE: Duration = Duration::from_secs(5);

/// `Err` lists what is wrong, one line per pool.
pub(super) async fn check(control: &Control) -> Result<(), Vec<String>> {
    if control.phase() != Phase::Running {
        return Err(vec!["shutting down".into()]);
    }
    let mut checks = JoinSet::new();
    for db in control.current().databases.values() {
        checks.spawn(check_pool(Arc::clone(&db.pool)));
    }
    let mut problems = Vec::new();
    while let Some(result) = checks.join_next().await {
        if let Ok(Err(problem)) = result {
            problems.push(problem);
        }
    }
    problems.sort();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

async fn check_pool(pool: Arc<Pool>) -> Result<(), String> {
    let Some(m) = pool.metrics.get() else {
        return Ok(());
    };
    let snap = pool.snapshot();
    if snap.open > snap.opening {
        return Ok(());
    }
    let ok = m.age(m.last_connect_ok.load(Ordering::Relaxed));
    let err = m.age(m.last_connect_err.load(Ordering::Relaxed));
    if ok.is_some_and(|ok| ok < FRESH && err.is_none_or(|err| err > ok)) {
        return Ok(());
    }
    let mut probe = m.probe.lock().await;
    if let Some((at, result)) = &*probe {
        if at.elapsed() < PROBE_CACHE {
            return result.clone();
        }
    }
    let result = match tokio::time::timeout(PROBE_TIMEOUT, pool.target.connect()).await {
        Ok(Ok(_server)) => Ok(()), // dropped: closed at once
        Ok(Err(e)) => Err(format!("database \"{}\": {e}", pool.name)),
        Err(_) => Err(format!(
            "database \"{}\": no server login within {PROBE_TIMEOUT:?}",
            pool.name
        )),
    };
    *probe = Some((Instant::now(), result.clone()));
    result
}
