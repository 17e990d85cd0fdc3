//! The load generator: one task per connection, each with its own keep-alive HTTP/1.1 client,
//! latencies in an HDR histogram at microsecond resolution.

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, RequestBuilder};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest latency the histograms hold (60 s); slower requests are clamped to it.
const MAX_MICROS: u64 = 60_000_000;
/// How many error descriptions a tally keeps for the report.
const MAX_SAMPLES: usize = 5;

/// Headers every SCIM request carries.
pub fn scim_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("token is a valid header value");
    h.insert(AUTHORIZATION, auth);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    h.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/scim+json"),
    );
    h
}

/// The host name of the started nodes when there are several ([`spread_over`]).
pub const NODES_HOST: &str = "rollcall-nodes.bench";

static NODES: std::sync::OnceLock<Vec<std::net::SocketAddr>> = std::sync::OnceLock::new();
static NEXT_NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// From now on each new [`client`] sends requests for [`NODES_HOST`] to the next of `nodes` in
/// turn: each connection sticks to one node, and the connections spread evenly.
pub fn spread_over(nodes: Vec<std::net::SocketAddr>) {
    let _ = NODES.set(nodes);
}

/// A client that keeps exactly one HTTP/1.1 connection alive: used by one task at a time.
pub fn client(headers: &HeaderMap) -> Client {
    let mut builder = Client::builder();
    if let Some(nodes) = NODES.get().filter(|n| !n.is_empty()) {
        let k = NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % nodes.len();
        builder = builder.resolve(NODES_HOST, nodes[k]);
    }
    builder
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .no_proxy()
        .default_headers(headers.clone())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

/// One request and its answer, timed from send to the last byte of the body.
pub struct Exchange {
    pub status: u16,
    pub body: Vec<u8>,
    pub micros: u64,
    /// Set for transport failures and for answers that were 2xx but not what the step expected.
    pub failure: Option<String>,
}

impl Exchange {
    pub fn ok(&self) -> bool {
        self.failure.is_none() && (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Marks a 2xx answer as a failure of the workload (e.g. a missing `id`).
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failure = Some(why.into());
    }

    pub fn describe(&self) -> String {
        if let Some(f) = &self.failure {
            return format!("status {}: {f}", self.status);
        }
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!("status {}: {body}", self.status)
    }
}

/// Sends `req` and reads the whole body.
pub async fn exchange(req: RequestBuilder) -> Exchange {
    let start = Instant::now();
    let (status, body, failure) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(b) => (status, b.to_vec(), None),
                Err(e) => (status, Vec::new(), Some(format!("reading body: {e}"))),
            }
        }
        Err(e) => (0, Vec::new(), Some(format!("transport: {e}"))),
    };
    Exchange {
        status,
        body,
        micros: start.elapsed().as_micros() as u64,
        failure,
    }
}

/// Counts and latencies of a set of requests.
pub struct Tally {
    pub hist: Histogram<u64>,
    pub requests: u64,
    /// Requests made during warm-up (not in `requests`).
    pub warmup_requests: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("histogram bounds"),
            requests: 0,
            warmup_requests: 0,
            errors: 0,
            error_samples: Vec::new(),
        }
    }
}

impl Tally {
    /// Counts an exchange; `measured` is false during warm-up, where only errors count.
    pub fn add(&mut self, ex: &Exchange, measured: bool) {
        if !ex.ok() {
            self.errors += 1;
            if self.error_samples.len() < MAX_SAMPLES {
                self.error_samples.push(ex.describe());
            }
        }
        if measured {
            self.requests += 1;
            self.hist.saturating_record(ex.micros.max(1));
        } else {
            self.warmup_requests += 1;
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.hist.add(&other.hist).expect("histograms have the same bounds");
        self.requests += other.requests;
        self.warmup_requests += other.warmup_requests;
        self.errors += other.errors;
        for s in other.error_samples {
            if self.error_samples.len() < MAX_SAMPLES {
                self.error_samples.push(s);
            }
        }
    }

    pub fn p50(&self) -> u64 {
        self.hist.value_at_quantile(0.50)
    }

    pub fn p99(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

/// A request shape for the timed runs: builds the next request of one worker.
pub trait Op: Send + Sync + 'static {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder;
}

/// Timing of a fixed-duration run.
#[derive(Clone, Copy)]
pub struct Timing {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs `op` on `concurrency` connections for warm-up plus duration; only requests started
/// inside the measured window count towards throughput and latency.
pub async fn timed(timing: Timing, headers: &HeaderMap, op: Arc<dyn Op>) -> Tally {
    let clients: Vec<Client> = (0..timing.concurrency).map(|_| client(headers)).collect();
    let t0 = Instant::now();
    let measure_from = t0 + timing.warmup;
    let until = measure_from + timing.duration;
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + i as u64);
            let mut tally = Tally::default();
            loop {
                let start = Instant::now();
                if start >= until {
                    break;
                }
                let ex = exchange(op.request(&c, &mut rng)).await;
                tally.add(&ex, start >= measure_from);
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("load task"));
    }
    total
}

/// Runs `job(client, i)` for every i in 0..n on `concurrency` connections, each job returning
/// the exchanges it made; every exchange counts.
pub async fn pool<F, Fut>(n: usize, concurrency: usize, headers: &HeaderMap, job: F) -> Tally
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Exchange>> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1).min(n.max(1)) {
        let c = client(headers);
        let job = job.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                for ex in job(c.clone(), i).await {
                    tally.add(&ex, true);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("pool task"));
    }
    total
}
