use std::collections::BTreeMap;

use herald_domain::{Channel, MessageId, Priority, TenantId};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::ExchangeKind;

use crate::{Broker, BrokerError};

/// Retry delay tiers, in seconds: a retry waits in the smallest tier at
/// least as long as its backoff, then returns to the scheduler.
pub const DELAY_TIERS: [u32; 7] = [1, 5, 30, 120, 600, 1800, 3600];

/// The most messages one user queue holds unless configured
/// (`HERALD_USER_QUEUE_MAX_LENGTH`). Past it the producer answers 503 with
/// Retry-After. A RabbitMQ policy (`max-length`) can lower it without
/// redeclaring: the lower of the two applies.
pub const USER_QUEUE_MAX_LENGTH: i64 = 2_000_000;

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 406)
}

/// Every exchange and queue name of one deployment, prefixed by its
/// namespace so that deployments and tests can share a broker.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
    user_queue_max_length: i64,
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(k), v);
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

const DURABLE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Topology {
            ns: namespace.to_owned(),
            user_queue_max_length: USER_QUEUE_MAX_LENGTH,
        }
    }

    /// The length limit of user queues this topology declares. Every
    /// service that declares them (producer, scheduler) must agree: a
    /// queue's arguments are fixed when it is first declared.
    pub fn with_user_queue_max_length(mut self, max: i64) -> Self {
        self.user_queue_max_length = max.max(1);
        self
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Direct exchange routing enqueued jobs to the tenants' user queues.
    pub fn user_exchange(&self) -> String {
        format!("{}.user", self.ns)
    }

    pub fn user_queue(&self, tenant: TenantId, channel: Channel) -> String {
        format!("{}.user.{}.{}", self.ns, tenant, channel)
    }

    pub fn user_routing_key(tenant: TenantId, channel: Channel) -> String {
        format!("{tenant}.{channel}")
    }

    /// Direct exchange routing placed jobs to the per-channel central queues.
    pub fn central_exchange(&self) -> String {
        format!("{}.central", self.ns)
    }

    pub fn central_queue(&self, channel: Channel) -> String {
        format!("{}.central.{}", self.ns, channel)
    }

    /// The express lane of a channel's central queue: jobs of tenants that
    /// were idle, kept shallow by the scheduler and consumed by workers
    /// beside the central queue, so that they overtake its backlog
    /// (decision 0024).
    pub fn express_queue(&self, channel: Channel) -> String {
        format!("{}.central.{}.express", self.ns, channel)
    }

    fn express_routing_key(channel: Channel) -> String {
        format!("{channel}.express")
    }

    /// Jobs coming back to the scheduler (retries after their delay); served
    /// before the user queues.
    pub fn return_queue(&self) -> String {
        format!("{}.return", self.ns)
    }

    pub fn delay_queue(&self, seconds: u32) -> String {
        format!("{}.delay.{}s", self.ns, seconds)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }

    pub fn callbacks_queue(&self) -> String {
        format!("{}.callbacks", self.ns)
    }

    /// Classic queue, version 2, with priority bands (see [`Priority::band`]).
    fn priority_args() -> FieldTable {
        table(vec![
            ("x-queue-version", AMQPValue::LongInt(2)),
            (
                "x-max-priority",
                AMQPValue::ShortShortUInt(Priority::MAX_BAND),
            ),
        ])
    }

    /// Quorum queue that never drops: at-least-once dead-lettering needs
    /// `reject-publish` overflow.
    fn safe_quorum_args(extra: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut entries = vec![
            ("x-queue-type", text("quorum")),
            ("x-overflow", text("reject-publish")),
            ("x-dead-letter-strategy", text("at-least-once")),
        ];
        entries.extend(extra);
        table(entries)
    }

    /// Declares what every service shares: the exchanges, central queues,
    /// return, delay tiers, dead letters and callbacks. Idempotent.
    pub async fn declare_core(&self, ch: &lapin::Channel) -> Result<(), BrokerError> {
        let ex_opts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for ex in [self.user_exchange(), self.central_exchange()] {
            ch.exchange_declare(
                ex.as_str().into(),
                ExchangeKind::Direct,
                ex_opts,
                FieldTable::default(),
            )
            .await?;
        }
        for channel in Channel::ALL {
            for (q, key) in [
                (self.central_queue(channel), channel.as_str().to_owned()),
                (
                    self.express_queue(channel),
                    Self::express_routing_key(channel),
                ),
            ] {
                ch.queue_declare(q.as_str().into(), DURABLE, Self::priority_args())
                    .await?;
                ch.queue_bind(
                    q.as_str().into(),
                    self.central_exchange().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
        ch.queue_declare(
            self.return_queue().into(),
            DURABLE,
            Self::safe_quorum_args(vec![]),
        )
        .await?;
        for seconds in DELAY_TIERS {
            let args = Self::safe_quorum_args(vec![
                (
                    "x-message-ttl",
                    AMQPValue::LongLongInt(i64::from(seconds) * 1000),
                ),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&self.return_queue())),
            ]);
            ch.queue_declare(self.delay_queue(seconds).into(), DURABLE, args)
                .await?;
        }
        ch.queue_declare(
            self.dead_letter_queue().into(),
            DURABLE,
            Self::safe_quorum_args(vec![]),
        )
        .await?;
        ch.queue_declare(
            self.callbacks_queue().into(),
            DURABLE,
            Self::safe_quorum_args(vec![]),
        )
        .await?;
        Ok(())
    }

    /// Declares and binds a tenant's user queues, one per channel.
    pub async fn declare_tenant(
        &self,
        broker: &Broker,
        tenant: TenantId,
    ) -> Result<(), BrokerError> {
        let mut ch = broker.channel().await?;
        for channel in Channel::ALL {
            let q = self.user_queue(tenant, channel);
            if let Err(e) = ch
                .queue_declare(q.as_str().into(), DURABLE, self.user_queue_args())
                .await
            {
                if !is_precondition_failed(&e) {
                    return Err(e.into());
                }
                // Declared by an earlier version with other arguments (the
                // 406 closed the channel): keep the queue as it is.
                tracing::warn!(queue = %q, "A user queue exists with other arguments; keeping them (no length limit unless a policy sets one).");
                ch = broker.channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..DURABLE
                };
                ch.queue_declare(q.as_str().into(), passive, FieldTable::default())
                    .await?;
            }
            ch.queue_bind(
                q.as_str().into(),
                self.user_exchange().into(),
                Self::user_routing_key(tenant, channel).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    /// Deletes the user queues [`Topology::declare_tenant`] declared for a
    /// tenant that was never created (its record was refused), while they
    /// are empty: a refused create leaves nothing behind.
    pub async fn forget_tenant(
        &self,
        broker: &Broker,
        tenant: TenantId,
    ) -> Result<(), BrokerError> {
        let ch = broker.channel().await?;
        for channel in Channel::ALL {
            let q = self.user_queue(tenant, channel);
            let empty_only = lapin::options::QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            };
            ch.queue_delete(q.as_str().into(), empty_only).await?;
        }
        let _ = ch.close(200, "forgotten".into()).await;
        Ok(())
    }

    /// A user queue: priority bands, and a length limit; past it the broker
    /// refuses publishes (a nack), which the producer answers with 503 —
    /// backpressure, never a dropped message.
    fn user_queue_args(&self) -> FieldTable {
        let mut args = Self::priority_args();
        args.insert(
            ShortString::from("x-max-length"),
            AMQPValue::LongLongInt(self.user_queue_max_length),
        );
        args.insert(ShortString::from("x-overflow"), text("reject-publish"));
        args
    }

    /// The smallest delay tier of at least `seconds` (the largest if none).
    pub fn delay_tier_for(seconds: u64) -> u32 {
        DELAY_TIERS
            .into_iter()
            .find(|t| u64::from(*t) >= seconds)
            .unwrap_or(DELAY_TIERS[DELAY_TIERS.len() - 1])
    }
}

impl Topology {
    /// A message for the dead-letter queue, its reason in the
    /// `x-herald-reason` header (and, for jobs, in `last_error`).
    pub fn dead_letter(&self, body: Vec<u8>, code: &str, reason: &str) -> crate::Outbound {
        crate::Outbound {
            exchange: String::new(),
            routing_key: self.dead_letter_queue(),
            body,
            priority: 0,
            headers: Some(table(vec![
                ("x-herald-code", text(code)),
                ("x-herald-reason", text(reason)),
            ])),
        }
    }

    /// A job for its channel's central queue.
    pub fn to_central(
        &self,
        channel: Channel,
        body: Vec<u8>,
        priority: Priority,
    ) -> crate::Outbound {
        self.by_central_exchange(channel.as_str().to_owned(), body, priority)
    }

    fn by_central_exchange(
        &self,
        routing_key: String,
        body: Vec<u8>,
        priority: Priority,
    ) -> crate::Outbound {
        crate::Outbound {
            exchange: self.central_exchange(),
            routing_key,
            body,
            priority: priority.band(),
            headers: None,
        }
    }

    /// A job for its channel's express lane ([`Topology::express_queue`]).
    pub fn to_express(
        &self,
        channel: Channel,
        body: Vec<u8>,
        priority: Priority,
    ) -> crate::Outbound {
        self.by_central_exchange(Self::express_routing_key(channel), body, priority)
    }

    /// A job for a tenant's user queue.
    pub fn to_user(
        &self,
        tenant: TenantId,
        channel: Channel,
        body: Vec<u8>,
        priority: Priority,
    ) -> crate::Outbound {
        crate::Outbound {
            exchange: self.user_exchange(),
            routing_key: Self::user_routing_key(tenant, channel),
            body,
            priority: priority.band(),
            headers: None,
        }
    }

    /// One tenant's encoded jobs as user-queue messages, several jobs per
    /// broker message (the broker's work is per message): grouped by
    /// channel and priority band, each group in the given order. Every
    /// message comes with the ids of the jobs it carries.
    pub fn to_user_batched(
        &self,
        tenant: TenantId,
        jobs: impl IntoIterator<Item = (MessageId, Channel, Priority, Vec<u8>)>,
    ) -> Vec<(Vec<MessageId>, crate::Outbound)> {
        type Group = (Priority, Vec<(MessageId, Vec<u8>)>);
        let mut groups: BTreeMap<(Channel, u8), Group> = BTreeMap::new();
        for (id, channel, priority, body) in jobs {
            groups
                .entry((channel, priority.band()))
                .or_insert_with(|| (priority, Vec::new()))
                .1
                .push((id, body));
        }
        let mut out = Vec::new();
        for ((channel, _), (priority, jobs)) in groups {
            for run in herald_proto::jobs::split(jobs, herald_proto::jobs::MAX_JOBS, |(_, body)| {
                body.len()
            }) {
                let (ids, bodies): (Vec<MessageId>, Vec<Vec<u8>>) = run.into_iter().unzip();
                let body = herald_proto::jobs::pack(&bodies);
                out.push((ids, self.to_user(tenant, channel, body, priority)));
            }
        }
        out
    }

    /// A job straight back to the scheduler (its return queue).
    pub fn to_return(&self, body: Vec<u8>) -> crate::Outbound {
        crate::Outbound {
            exchange: String::new(),
            routing_key: self.return_queue(),
            body,
            priority: 0,
            headers: None,
        }
    }

    /// A job to wait `seconds` (rounded up to a tier) and then return to the
    /// scheduler.
    pub fn to_delay(&self, seconds: u64, body: Vec<u8>) -> crate::Outbound {
        crate::Outbound {
            exchange: String::new(),
            routing_key: self.delay_queue(Self::delay_tier_for(seconds)),
            body,
            priority: 0,
            headers: None,
        }
    }
}

impl Topology {
    /// Deletes every queue and exchange of this namespace that Herald
    /// declared (the core ones and the given tenants' user queues). For
    /// tests and for tearing down a deployment; it drops queued jobs.
    pub async fn delete_all(
        &self,
        ch: &lapin::Channel,
        tenants: &[TenantId],
    ) -> Result<(), BrokerError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let mut queues: Vec<String> = Channel::ALL
            .iter()
            .flat_map(|c| [self.central_queue(*c), self.express_queue(*c)])
            .collect();
        queues.push(self.return_queue());
        queues.push(self.dead_letter_queue());
        queues.push(self.callbacks_queue());
        queues.extend(DELAY_TIERS.iter().map(|s| self.delay_queue(*s)));
        for tenant in tenants {
            queues.extend(Channel::ALL.iter().map(|c| self.user_queue(*tenant, *c)));
        }
        for q in queues {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for ex in [self.user_exchange(), self.central_exchange()] {
            ch.exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_waits_in_the_smallest_tier_that_covers_it() {
        assert_eq!(Topology::delay_tier_for(0), 1);
        assert_eq!(Topology::delay_tier_for(4), 5);
        assert_eq!(Topology::delay_tier_for(31), 120);
        assert_eq!(Topology::delay_tier_for(99_999), 3600);
    }

    #[test]
    fn names_carry_the_namespace() {
        let t = Topology::new("test_ns");
        let tenant = TenantId::new();
        assert_eq!(
            t.user_queue(tenant, Channel::Email),
            format!("test_ns.user.{tenant}.email")
        );
        assert_eq!(t.central_queue(Channel::Wework), "test_ns.central.wework");
        assert_eq!(
            t.express_queue(Channel::Wework),
            "test_ns.central.wework.express"
        );
    }
}
