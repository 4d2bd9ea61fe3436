//! Which ReleasePause changes wake gates: spec changes (a resume, a new sha, a
//! changed scope) and deletions, at once. Status-only writes (held-gate counts)
//! wake nobody, so a busy pause does not make every gate it holds re-evaluate.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::ReleasePause;

/// A stream of pauses whose spec changed or that were deleted.
pub fn pause_spec_changes(
    api: Api<ReleasePause>,
    wc: watcher::Config,
) -> impl Stream<Item = Result<ReleasePause, watcher::Error>> + Send {
    let mut seen: HashMap<String, Option<i64>> = HashMap::new();
    watcher(api, wc).default_backoff().filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let generation = p.metadata.generation;
                match seen.insert(uid, generation) {
                    Some(previous) if previous == generation => None,
                    _ => Some(Ok(p)),
                }
            }
            Ok(watcher::Event::Delete(p)) => {
                seen.remove(&p.metadata.uid.clone().unwrap_or_default());
                Some(Ok(p))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}
