//! The services of this process: their databases, their consumers, their routes.

use std::time::Duration;

use tally_bus::{BusSettings, EmbeddedBus};
use tally_db::{Db, DbSettings};
use tally_kernel::Currency;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;

/// Every service a token's scope may name, whether or not this build runs it yet, and
/// `metrics` for a protected `/metrics`.
pub const SCOPE_SERVICES: &[&str] = &[
    "patients",
    "care",
    "billing",
    "wallets",
    "claims",
    "trading",
    "reporting",
    "notifications",
    "metrics",
];

pub struct Platform {
    wallets: Db,
    reporting: Db,
    billing: Db,
    pub claims: Db,
    patients: Db,
    care: Db,
    notifications: Db,
    trading: Db,
    pub auth: Db,
    /// The currency of wallets opened without one (ADD_USER on the `payment` topic too).
    pub default_currency: Currency,
    /// The card gateway billing charges and refunds through (the built-in test gateway).
    gateway: std::sync::Arc<dyn tally_billing::CardGateway>,
}

/// Where care finds out whether a patient may be booked.
pub enum PatientsAt {
    /// The patients service runs in this process.
    InProcess,
    /// Another process serves it: its URL and this service's own token (`patients:read`).
    Http { url: String, token: String },
}

/// Per-service settings of the HTTP API.
pub struct ApiSettings {
    pub patients: PatientsAt,
    pub care: tally_care::CareSettings,
    pub default_currency: Currency,
    pub top_providers: tally_claims::TopProvidersRate,
    /// Largest `POST /claims` body (files of claim rows are larger than other requests).
    pub claims_body_limit_bytes: usize,
    pub notifications: tally_notifications::NotificationSettings,
    /// Limits of the trading WebSocket's connections.
    pub trading_ws: tally_trading::WsSettings,
    /// The trading WebSocket's open connections, closed on shutdown.
    pub trading_connections: tally_trading::Connections,
}

/// How requests are authenticated and limited.
pub struct Security {
    pub auth: tally_auth::AuthState,
    pub limiter: tally_auth::WriteLimiter,
    pub protect_metrics: bool,
}

impl Security {
    /// Token check and write limit for one service's routes.
    fn protect(&self, router: axum::Router, service: &'static str) -> axum::Router {
        tally_auth::require(self.limiter.apply(router), self.auth.clone(), service)
    }
}

impl Platform {
    /// Opens and migrates every service's database.
    pub async fn open(settings: &DbSettings) -> anyhow::Result<Platform> {
        Ok(Platform {
            wallets: Db::open_and_migrate(settings, &tally_wallets::SCHEMA).await?,
            reporting: Db::open_and_migrate(settings, &tally_reporting::SCHEMA).await?,
            billing: Db::open_and_migrate(settings, &tally_billing::SCHEMA).await?,
            claims: Db::open_and_migrate(settings, &tally_claims::SCHEMA).await?,
            patients: Db::open_and_migrate(settings, &tally_patients::SCHEMA).await?,
            care: Db::open_and_migrate(settings, &tally_care::SCHEMA).await?,
            notifications: Db::open_and_migrate(settings, &tally_notifications::SCHEMA).await?,
            trading: Db::open_and_migrate(settings, &tally_trading::SCHEMA).await?,
            default_currency: Currency::parse("USD")?,
            gateway: std::sync::Arc::new(tally_billing::TestGateway::new()),
            auth: Db::open_and_migrate(settings, &tally_auth::SCHEMA).await?,
        })
    }

    /// Billing, charging cards through the platform's one gateway.
    fn billing(&self) -> tally_billing::Billing {
        tally_billing::Billing::new(self.billing.clone(), self.gateway.clone())
    }

    pub fn notifications(
        &self,
        settings: tally_notifications::NotificationSettings,
    ) -> tally_notifications::Notifications {
        tally_notifications::Notifications::new(self.notifications.clone(), settings)
    }

    /// The services' databases (each with an event log).
    pub fn databases(&self) -> Vec<Db> {
        vec![
            self.wallets.clone(),
            self.reporting.clone(),
            self.billing.clone(),
            self.claims.clone(),
            self.patients.clone(),
            self.care.clone(),
            self.notifications.clone(),
            self.trading.clone(),
        ]
    }

    pub fn bus(&self, max_attempts: u32) -> EmbeddedBus {
        let settings = BusSettings {
            max_attempts: max_attempts.max(1),
            ..BusSettings::default()
        };
        let mut bus = EmbeddedBus::new(settings);
        bus.add_log(self.wallets.clone(), tally_wallets::PUBLISHES);
        bus.add_log(self.reporting.clone(), &[]);
        bus.add_log(self.billing.clone(), tally_billing::PUBLISHES);
        bus.add_log_with_rows(
            self.claims.clone(),
            tally_claims::PUBLISHES,
            &tally_claims::ROW_EVENTS,
        );
        bus.add_log(self.patients.clone(), tally_patients::PUBLISHES);
        bus.add_log(self.care.clone(), tally_care::PUBLISHES);
        bus.add_log(self.notifications.clone(), tally_notifications::PUBLISHES);
        bus.add_log(self.trading.clone(), tally_trading::PUBLISHES);
        bus.add_consumer(tally_notifications::recipients_consumer(
            self.notifications.clone(),
        ));
        bus.add_consumer(tally_notifications::messages_consumer(
            self.notifications.clone(),
        ));
        bus.add_consumer(tally_reporting::statistics_consumer(self.reporting.clone()));
        for consumer in self.billing().consumers() {
            bus.add_consumer(consumer);
        }
        bus.add_consumer(tally_wallets::payments_consumer(self.wallets.clone()));
        bus.add_consumer(tally_wallets::payment_channel_consumer(
            self.wallets.clone(),
            self.default_currency,
        ));
        bus.add_consumer(tally_trading::wallets_consumer(self.trading.clone()));
        bus
    }

    pub fn http(&self, settings: ApiSettings, security: Security) -> tally_http::Platform {
        let wallets = tally_wallets::Wallets::new(self.wallets.clone(), settings.default_currency);
        let claims = tally_claims::router(tally_claims::Claims::new(
            self.claims.clone(),
            settings.top_providers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.claims_body_limit_bytes,
        ));
        let reporting = tally_reporting::router(self.reporting.clone());
        let directory: std::sync::Arc<dyn tally_care::PatientDirectory> = match settings.patients {
            PatientsAt::InProcess => std::sync::Arc::new(InProcessPatients(
                tally_patients::Patients::new(self.patients.clone()),
            )),
            PatientsAt::Http { url, token } => {
                std::sync::Arc::new(tally_care::HttpPatientDirectory::new(url, token))
            }
        };
        let care = tally_care::router(tally_care::Care::new(
            self.care.clone(),
            directory,
            settings.care,
        ));
        let trading = tally_trading::Trading::new(
            self.trading.clone(),
            std::sync::Arc::new(TokenPermissions(security.auth.clone())),
            settings.trading_ws,
            settings.trading_connections,
        );
        let api = axum::Router::new()
            .merge(security.protect(tally_wallets::router(wallets), "wallets"))
            .merge(security.protect(reporting, "reporting"))
            .merge(security.protect(tally_billing::router(self.billing()), "billing"))
            .merge(security.protect(claims, "claims"))
            .merge(security.protect(
                tally_patients::router(tally_patients::Patients::new(self.patients.clone())),
                "patients",
            ))
            .merge(security.protect(care, "care"))
            .merge(security.protect(
                tally_notifications::router(self.notifications(settings.notifications)),
                "notifications",
            ))
            .merge(security.protect(tally_trading::router(trading), "trading"));
        let mut openapi = tally_wallets::WalletsApi::openapi();
        openapi.merge(tally_reporting::ReportingApi::openapi());
        openapi.merge(tally_billing::BillingApi::openapi());
        openapi.merge(tally_claims::ClaimsApi::openapi());
        openapi.merge(tally_patients::PatientsApi::openapi());
        openapi.merge(tally_care::CareApi::openapi());
        openapi.merge(tally_notifications::NotificationsApi::openapi());
        openapi.merge(tally_trading::TradingApi::openapi());
        openapi.info.title = "Tally".into();
        openapi.info.version = env!("CARGO_PKG_VERSION").into();
        openapi.info.description = Some(
            "Billing and payments platform. Amounts are exact decimals; errors are \
             application/problem+json; money-moving requests take an Idempotency-Key."
                .into(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                utoipa::openapi::security::SecurityScheme::Http(
                    utoipa::openapi::security::Http::new(
                        utoipa::openapi::security::HttpAuthScheme::Bearer,
                    ),
                ),
            );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let mut readiness = self.databases();
        readiness.push(self.auth.clone());
        let guard_metrics: Option<Box<dyn FnOnce(axum::Router) -> axum::Router + Send>> =
            if security.protect_metrics {
                let auth = security.auth.clone();
                Some(Box::new(move |router| {
                    tally_auth::require(router, auth, "metrics")
                }))
            } else {
                None
            };
        tally_http::Platform {
            api,
            openapi,
            readiness,
            metrics: tally_http::metrics::handle(),
            guard_metrics,
        }
    }

    pub async fn close(&self) {
        for db in self.databases() {
            db.close().await;
        }
        self.auth.close().await;
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

/// Forgets rate-limit buckets of tokens not seen lately, every minute.
pub async fn forget_idle_buckets(limiter: tally_auth::WriteLimiter, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The token store answering the trading WebSocket, which checks each message's scope.
struct TokenPermissions(tally_auth::AuthState);

impl tally_trading::Permissions for TokenPermissions {
    fn check<'a>(
        &'a self,
        token_id: &'a str,
        service: &'static str,
        write: bool,
    ) -> futures_util::future::BoxFuture<'a, anyhow::Result<tally_trading::Verdict>> {
        Box::pin(async move {
            let access = if write {
                tally_auth::Access::Write
            } else {
                tally_auth::Access::Read
            };
            Ok(match self.0.standing(token_id, service, access).await? {
                tally_auth::Standing::Allowed => tally_trading::Verdict::Allowed,
                tally_auth::Standing::MissingScope => tally_trading::Verdict::MissingScope,
                tally_auth::Standing::Revoked => tally_trading::Verdict::Revoked,
            })
        })
    }
}

/// The patients service answering care in this process, with no HTTP in between.
struct InProcessPatients(tally_patients::Patients);

impl tally_care::PatientDirectory for InProcessPatients {
    fn status<'a>(
        &'a self,
        patient_id: uuid::Uuid,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<Option<tally_care::PatientStatus>, tally_care::DirectoryError>,
    > {
        Box::pin(async move {
            let status = self
                .0
                .lookup(patient_id)
                .await
                .map_err(|e| tally_care::DirectoryError::Failed(e.to_string()))?;
            Ok(status.map(|s| match s {
                tally_patients::PatientStatus::Active => tally_care::PatientStatus::Active,
                tally_patients::PatientStatus::Deactivated => {
                    tally_care::PatientStatus::Deactivated
                }
            }))
        })
    }
}
