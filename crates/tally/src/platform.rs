//! The services of this process: their databases, their consumers, their routes.

use std::time::Duration;

use tally_bus::{BusSettings, EmbeddedBus};
use tally_db::{Db, DbSettings};
use tally_kernel::Currency;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;

pub struct Platform {
    wallets: Db,
    reporting: Db,
}

impl Platform {
    /// Opens and migrates every service's database.
    pub async fn open(settings: &DbSettings) -> anyhow::Result<Platform> {
        Ok(Platform {
            wallets: Db::open_and_migrate(settings, &tally_wallets::SCHEMA).await?,
            reporting: Db::open_and_migrate(settings, &tally_reporting::SCHEMA).await?,
        })
    }

    pub fn databases(&self) -> Vec<Db> {
        vec![self.wallets.clone(), self.reporting.clone()]
    }

    pub fn bus(&self, max_attempts: u32) -> EmbeddedBus {
        let settings = BusSettings {
            max_attempts: max_attempts.max(1),
            ..BusSettings::default()
        };
        let mut bus = EmbeddedBus::new(settings);
        bus.add_log(self.wallets.clone(), tally_wallets::PUBLISHES);
        bus.add_log(self.reporting.clone(), &[]);
        bus.add_consumer(tally_reporting::statistics_consumer(self.reporting.clone()));
        bus
    }

    pub fn http(&self, default_currency: Currency) -> tally_http::Platform {
        let api = axum::Router::new()
            .merge(tally_wallets::router(tally_wallets::Wallets::new(
                self.wallets.clone(),
                default_currency,
            )))
            .merge(tally_reporting::router(self.reporting.clone()));
        let mut openapi = tally_wallets::WalletsApi::openapi();
        openapi.merge(tally_reporting::ReportingApi::openapi());
        openapi.info.title = "Tally".into();
        openapi.info.version = env!("CARGO_PKG_VERSION").into();
        openapi.info.description = Some(
            "Billing and payments platform. Amounts are exact decimals; errors are \
             application/problem+json; money-moving requests take an Idempotency-Key."
                .into(),
        );
        tally_http::Platform {
            api,
            openapi,
            readiness: self.databases(),
            metrics: tally_http::metrics::handle(),
        }
    }

    pub async fn close(&self) {
        for db in self.databases() {
            db.close().await;
        }
    }
}

/// Forgets idempotency keys past their retention, hourly.
pub async fn purge_idempotency_keys(
    dbs: Vec<Db>,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let cutoff = tally_kernel::time::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(1));
        for db in &dbs {
            if let Err(e) = tally_db::idempotency::purge_older_than(db, cutoff).await {
                tracing::warn!(service = db.service(), error = %e, "failed to purge idempotency keys");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
