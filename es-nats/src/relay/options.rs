//! What the relay publishes to and how: the JetStream stream, subjects, window and timings.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, RetentionPolicy, StorageType};

use crate::envelope::Subjects;

/// The relay's settings. [`RelayOptions::new`] gives the defaults below; each `with_` method
/// changes one.
///
/// | setting | default |
/// |---|---|
/// | stream name | `ES_EVENTS` |
/// | subjects | prefix `es.events`, so the stream binds `es.events.>` |
/// | duplicate window | 2 minutes (JetStream's default) |
/// | replicas | 1 |
/// | publishes in flight | 256 |
/// | request timeout (publish acknowledgement, stream requests) | 5 s |
/// | backoff while the broker or store fails | 100 ms, doubling, at most 5 s |
/// | store head refresh (for the lag) | 1 s |
#[derive(Clone, Debug)]
pub struct RelayOptions {
    pub(crate) stream_name: String,
    pub(crate) subjects: Subjects,
    pub(crate) duplicate_window: Duration,
    pub(crate) replicas: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) head_refresh: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions::new()
    }
}

impl RelayOptions {
    /// The defaults (see the table above).
    #[must_use]
    pub fn new() -> Self {
        RelayOptions {
            stream_name: "ES_EVENTS".to_owned(),
            subjects: Subjects::default(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            head_refresh: Duration::from_secs(1),
        }
    }

    /// Publishes to the JetStream stream named `name` (created if missing).
    #[must_use]
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.stream_name = name.into();
        self
    }

    /// Publishes under these subjects (the stream binds [`Subjects::all`]).
    #[must_use]
    pub fn with_subjects(mut self, subjects: Subjects) -> Self {
        self.subjects = subjects;
        self
    }

    /// JetStream's duplicate window for a stream the relay creates: a message whose
    /// `Nats-Msg-Id` (the event id) was stored within the window is dropped. The relay does not
    /// depend on it (see the [module docs](crate::relay)); it is a second guard.
    #[must_use]
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// The replicas of a stream the relay creates (1 on a single server, 3 in a cluster).
    #[must_use]
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How many publishes may await their acknowledgement at once (at least 1). More hides the
    /// round trip better; each in flight holds one event.
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// How long to wait for a publish acknowledgement or a stream request before taking the
    /// broker as unreachable and starting over from what the stream holds.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The first delay after a failure, and the most it doubles to while failures go on.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// How often the relay reads the store's last position for [`RelayStatus::lag`](crate::relay::RelayStatus::lag).
    #[must_use]
    pub fn with_head_refresh(mut self, interval: Duration) -> Self {
        self.head_refresh = interval.max(Duration::from_millis(1));
        self
    }

    /// The stream name.
    #[must_use]
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The subjects.
    #[must_use]
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The configuration of the stream the relay creates when it is missing: the subjects
    /// [`Subjects::all`], file storage, limits retention with no limit (nothing is removed
    /// unless an operator adds a limit), old messages discarded first if one is added, the
    /// duplicate window, and deletes and purges denied, because the relay resumes after the
    /// last message the stream holds.
    #[must_use]
    pub fn stream_config(&self) -> Config {
        Config {
            name: self.stream_name.clone(),
            description: Some("es-core event log, published by the es-nats relay".to_owned()),
            subjects: vec![self.subjects.all()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Config::default()
        }
    }

    /// Why an existing stream cannot take the relay's log, or `None` if it can.
    pub(crate) fn refusal(&self, info: &Info) -> Option<String> {
        let config = &info.config;
        let all = self.subjects.all();
        if !config.subjects.contains(&all) {
            return Some(format!(
                "it binds {:?}, not `{all}` (configure the relay's subject prefix to match)",
                config.subjects
            ));
        }
        if config.retention != RetentionPolicy::Limits {
            return Some(format!(
                "its retention is {:?}: with interest or work-queue retention messages go away \
                 once consumed, and the relay could no longer read where it stopped (use limits)",
                config.retention
            ));
        }
        if config.sealed {
            return Some("it is sealed".to_owned());
        }
        if config.mirror.is_some() {
            return Some("it is a mirror, which takes no publishes".to_owned());
        }
        None
    }
}
