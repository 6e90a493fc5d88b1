//! The notifications adapters: the store, the consumers, the delivery worker and the routes.

pub mod consumers;
pub mod delivery;
pub mod routes;
pub mod store;

use std::sync::Arc;

use tally_db::Db;

use crate::settings::NotificationSettings;

/// The notifications service as the worker, the routes and the binary see it. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    db: Db,
    settings: Arc<NotificationSettings>,
}

impl Notifications {
    /// The service on its database. The binary checks the settings with
    /// [`NotificationSettings::validate`] first; the worker refuses to start on invalid ones.
    pub fn new(db: Db, settings: NotificationSettings) -> Self {
        Self {
            db,
            settings: Arc::new(settings),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn settings(&self) -> &NotificationSettings {
        &self.settings
    }
}
