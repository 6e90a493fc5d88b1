//! The two consumers: `notifications.recipients` keeps contact details, `notifications.messages`
//! turns events into messages. The bus records each event in the inbox in the transaction the
//! handler writes in, so each effect happens once; the messages' unique (event, recipient) key
//! is a second line of defence. An unknown version or data that does not parse is permanent:
//! the event goes to the dead letters at once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tally_bus::{Consumer, Handler, HandlerError};
use tally_db::{Db, WriteTx};
use tally_kernel::Envelope;

use super::store::{self, NewMessage};
use crate::domain::{Contact, EventError, Occasion};
use crate::{MESSAGE_TOPICS, RECIPIENT_TOPICS};

pub const RECIPIENTS_CONSUMER: &str = "notifications.recipients";
pub const MESSAGES_CONSUMER: &str = "notifications.messages";

pub fn recipients_consumer(db: Db) -> Consumer {
    Consumer {
        name: RECIPIENTS_CONSUMER,
        topics: RECIPIENT_TOPICS,
        db,
        handler: Arc::new(Recipients),
    }
}

pub fn messages_consumer(db: Db) -> Consumer {
    Consumer {
        name: MESSAGES_CONSUMER,
        topics: MESSAGE_TOPICS,
        db,
        handler: Arc::new(Messages),
    }
}

fn permanent(e: EventError) -> HandlerError {
    HandlerError::Permanent(e.into())
}

struct Recipients;

impl Recipients {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        let contact = Contact::parse(event).map_err(permanent)?;
        store::save_contact(tx, &contact, event.occurred_at).await?;
        Ok(())
    }
}

impl Handler for Recipients {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}

struct Messages;

impl Messages {
    async fn apply(&self, tx: &mut WriteTx, event: &Envelope) -> Result<(), HandlerError> {
        let (patient_id, occasion) = Occasion::parse(event).map_err(permanent)?;
        let message = occasion.render();
        let new = NewMessage {
            event_id: event.id,
            event_type: &event.event_type,
            patient_id,
            correlation_id: &event.correlation_id,
            message: &message,
        };
        if store::save_message(tx, &new).await? {
            tracing::debug!(event_id = %event.id, event_type = %event.event_type, "message stored");
        }
        Ok(())
    }
}

impl Handler for Messages {
    fn handle<'a>(
        &'a self,
        _db: &'a Db,
        tx: &'a mut WriteTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(tx, event))
    }
}
