//! Which events a subscription delivers.

use crate::event::RecordedEvent;

/// Which events a subscription (or a filtered read of the log) delivers: those of any of the
/// listed aggregate types *and* any of the listed event types. An empty list matches
/// anything, so [`EventFilter::all`] (the default) matches every event.
///
/// The stores with SQL evaluate the filter in the database, next to the index on global
/// positions, so a subscriber to rare events does not download the whole log.
///
/// ```
/// use es_core::EventFilter;
///
/// // Payments and shipments of orders, and nothing else.
/// let filter = EventFilter::all()
///     .aggregate_type("order")
///     .event_type("PaymentProcessed")
///     .event_type("OrderShipped");
/// assert!(!filter.is_all());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    aggregate_types: Vec<String>,
    event_types: Vec<String>,
}

impl EventFilter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        EventFilter::default()
    }

    /// Also accepts events of streams of `aggregate_type` (the aggregate types listed are
    /// alternatives; with none listed, every aggregate type matches).
    #[must_use]
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Self {
        let aggregate_type = aggregate_type.into();
        if !self.aggregate_types.contains(&aggregate_type) {
            self.aggregate_types.push(aggregate_type);
        }
        self
    }

    /// Also accepts events of type `event_type` (the event types listed are alternatives;
    /// with none listed, every event type matches).
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        let event_type = event_type.into();
        if !self.event_types.contains(&event_type) {
            self.event_types.push(event_type);
        }
        self
    }

    /// The aggregate types accepted (empty: any).
    #[must_use]
    pub fn aggregate_types(&self) -> &[String] {
        &self.aggregate_types
    }

    /// The event types accepted (empty: any).
    #[must_use]
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    /// Whether the filter accepts every event.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.aggregate_types.is_empty() && self.event_types.is_empty()
    }

    /// Whether `event` passes the filter.
    #[must_use]
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        listed(&self.aggregate_types, event.stream.aggregate_type())
            && listed(&self.event_types, &event.event_type)
    }
}
