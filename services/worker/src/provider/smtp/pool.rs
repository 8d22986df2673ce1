//! Idle sessions kept between sends, so that consecutive messages reuse one.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::session::Session;
use super::SmtpAdapter;

/// Idle connections older than this are closed rather than reused: servers
/// drop idle sessions after a while, and a dead one costs a failed MAIL.
const MAX_IDLE: Duration = Duration::from_secs(60);

pub(super) struct IdleConnection {
    conn: Session,
    since: Instant,
}

impl SmtpAdapter {
    pub(super) fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|c| c.since.elapsed() < MAX_IDLE && !c.conn.conn.has_broken());
        idle.pop().map(|c| c.conn)
    }

    pub(super) fn put_idle(&self, conn: Session) {
        if conn.conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push(IdleConnection {
            conn,
            since: Instant::now(),
        });
    }
}
