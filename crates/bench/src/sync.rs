//! Initial syncs as Okta and Entra run them: for each user an existence check by filter then a
//! create; then group pushes: create each group, then PATCH its members in batches.

use crate::load::{self, exchange};
use crate::{Config, CpuMark, Round, Target, run_id, scim};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct SyncInfo {
    pub users: usize,
    pub groups: usize,
    pub member_patches: usize,
    pub batch: usize,
    pub users_secs: f64,
    pub groups_secs: f64,
    pub total_secs: f64,
    pub users_per_sec: f64,
}

/// Fills `slot` with the `id` of a 2xx answer, or marks the exchange failed.
fn take_id(ex: &mut load::Exchange, slot: &Mutex<Vec<Option<String>>>, i: usize) {
    if ex.ok() {
        match ex.json().and_then(|v| v["id"].as_str().map(str::to_string)) {
            Some(id) => slot.lock().unwrap()[i] = Some(id),
            None => ex.fail("the created resource has no id"),
        }
    }
}

/// Marks a list answer failed unless it found nothing (the resource must be new).
fn expect_absent(ex: &mut load::Exchange) {
    if ex.ok() {
        let total = ex.json().and_then(|v| v["totalResults"].as_u64());
        if total != Some(0) {
            ex.fail(format!("existence check found {total:?} resources; expected 0"));
        }
    }
}

pub async fn initial_sync(okta: bool, target: &Target, cfg: &Config) -> Round {
    let (base, headers) = if okta {
        (target.write_base.clone(), target.write_headers.clone())
    } else {
        (target.entra_base.clone(), target.entra_headers.clone())
    };
    let prefix = format!("{}{}", if okta { "okta" } else { "entra" }, run_id());
    let n = cfg.sync_users;
    let g = cfg.sync_groups;
    let conc = cfg.timing.concurrency;
    let started = Instant::now();
    let mark = CpuMark::take(&target.pids);

    // Users: existence check, then create.
    let user_ids: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; n]));
    let (b, p, ids) = (base.clone(), prefix.clone(), user_ids.clone());
    let mut tally = load::pool(n, conc, &headers, move |c, i| {
        let (base, prefix, ids) = (b.clone(), p.clone(), ids.clone());
        async move {
            let un = scim::user_name(&prefix, i as u64);
            let mut q = scim::eq_filter("userName", &un);
            if okta {
                q.push_str("&startIndex=1&count=100");
            }
            let mut check = exchange(c.get(format!("{base}/Users?{q}"))).await;
            expect_absent(&mut check);
            if !check.ok() {
                return vec![check];
            }
            let body = if okta {
                scim::okta_user(&prefix, i as u64)
            } else {
                scim::entra_user(&prefix, i as u64)
            };
            let mut create = exchange(c.post(format!("{base}/Users")).body(body.to_string())).await;
            take_id(&mut create, &ids, i);
            vec![check, create]
        }
    })
    .await;
    let users_secs = started.elapsed().as_secs_f64();
    let mut reads = n as u64;
    let mut writes = n as u64;

    // Groups: Entra looks each one up first; both create it empty.
    let groups_started = Instant::now();
    let group_ids: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; g]));
    let (b, p, ids) = (base.clone(), prefix.clone(), group_ids.clone());
    let t = load::pool(g, conc, &headers, move |c, i| {
        let (base, prefix, ids) = (b.clone(), p.clone(), ids.clone());
        async move {
            let name = format!("{prefix}-group-{i}");
            let mut out = Vec::new();
            if !okta {
                let q = scim::eq_filter("displayName", &name);
                let mut check = exchange(c.get(format!("{base}/Groups?{q}&excludedAttributes=members"))).await;
                expect_absent(&mut check);
                let ok = check.ok();
                out.push(check);
                if !ok {
                    return out;
                }
            }
            let ext = format!("{prefix}-g{i}");
            let body = scim::group(&name, (!okta).then_some(ext.as_str()));
            let mut create = exchange(c.post(format!("{base}/Groups")).body(body.to_string())).await;
            take_id(&mut create, &ids, i);
            out.push(create);
            out
        }
    })
    .await;
    tally.merge(t);
    if !okta {
        reads += g as u64;
    }
    writes += g as u64;

    // Memberships: user i joins group i % g, pushed in PATCHes of `sync_batch` members.
    let users = user_ids.lock().unwrap().clone();
    let groups = group_ids.lock().unwrap().clone();
    let mut members: Vec<Vec<String>> = vec![Vec::new(); g];
    for (i, id) in users.into_iter().enumerate() {
        if let Some(id) = id {
            members[i % g].push(id);
        }
    }
    let mut batches: Vec<(String, Vec<String>)> = Vec::new();
    for (gi, m) in members.into_iter().enumerate() {
        if let Some(gid) = &groups[gi] {
            for chunk in m.chunks(cfg.sync_batch) {
                batches.push((gid.clone(), chunk.to_vec()));
            }
        }
    }
    let patches = batches.len();
    let batches = Arc::new(batches);
    let (b, bs) = (base.clone(), batches.clone());
    let op = if okta { "add" } else { "Add" };
    let t = load::pool(patches, conc, &headers, move |c, j| {
        let (base, bs) = (b.clone(), bs.clone());
        async move {
            let (gid, ids) = &bs[j];
            let body = scim::add_members(op, ids).to_string();
            vec![exchange(c.patch(format!("{base}/Groups/{gid}")).body(body)).await]
        }
    })
    .await;
    tally.merge(t);
    writes += patches as u64;
    let groups_secs = groups_started.elapsed().as_secs_f64();
    let total_secs = started.elapsed().as_secs_f64();

    let mut r = Round::from_tally(&tally, total_secs, &target.pids).with_cpu(&tally, mark);
    r.reads = reads;
    r.writes = writes;
    r.sync = Some(SyncInfo {
        users: n,
        groups: g,
        member_patches: patches,
        batch: cfg.sync_batch,
        users_secs,
        groups_secs,
        total_secs,
        users_per_sec: n as f64 / total_secs,
    });
    r
}
