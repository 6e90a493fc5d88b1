//! The care store: loads physicians and appointments (locked for the transaction), lets the
//! domain decide, then writes the rows and the outbox in the same transaction.
//!
//! A booking locks the physician's row first: on PostgreSQL two bookings of one physician then
//! take turns, so the second sees the first's appointment when it looks for an overlap (on
//! SQLite the immediate transaction already holds the only write lock).

use chrono::SubsecRound as _;
use sqlx::any::AnyRow;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{Db, ServiceSchema, WriteTx};
use tally_kernel::time::{self, Timestamp};
use tally_kernel::{Currency, EventMeta, Money};
use uuid::Uuid;

use crate::domain::appointment::Closing;
use crate::domain::tariff::Rule;
use crate::domain::{
    Appointment, AppointmentStatus, BilledMinutes, Booking, CancelReason, CareError, CareEvent,
    Physician, PhysicianDetails, PhysicianName, Schedule, Tariff,
};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Most physicians or appointments returned in one page.
pub const MAX_PAGE: i64 = 100;

/// Why a store operation did not happen: the domain refused it, or the database failed. The
/// routes turn a refusal into a problem in the words of the API that was called.
#[derive(Debug)]
pub enum StoreError {
    Refused(CareError),
    Db(sqlx::Error),
}

impl From<CareError> for StoreError {
    fn from(e: CareError) -> Self {
        StoreError::Refused(e)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

/// An item of a list, with the cursor that pages past it.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub cursor: i64,
    pub item: T,
}

/// Which appointments a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppointmentFilter {
    pub patient_id: Option<Uuid>,
    pub physician_id: Option<Uuid>,
}

/// Now, at the precision stored (microseconds), so that a record answered from memory and the
/// same record read back are equal.
fn now() -> Timestamp {
    time::now().trunc_subsecs(6)
}

/// A stored value the service would not accept: named by column, never shown.
fn corrupt(table: &str, column: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{table}.{column} holds a value the service refuses").into())
}

const PHYSICIAN_COLUMNS: &str = "seq, id, name, tariff_kind, block_minutes, minimum_minutes, \
                                 fee_minor, currency, default_minutes, created_at";

fn physician_from_row(row: &AnyRow) -> Result<Listed<Physician>, sqlx::Error> {
    let bad = |column| corrupt("physicians", column);
    let text = |i: usize| row.try_get::<String, _>(i);
    let kind = text(3)?;
    let rule = match kind.as_str() {
        "per_block" => Rule::PerBlock {
            block_minutes: row
                .try_get::<Option<i64>, _>(4)?
                .ok_or_else(|| bad("block_minutes"))?,
        },
        "per_minute" => Rule::PerMinute {
            minimum_minutes: row
                .try_get::<Option<i64>, _>(5)?
                .ok_or_else(|| bad("minimum_minutes"))?,
        },
        _ => return Err(bad("tariff_kind")),
    };
    let currency = Currency::parse(&text(7)?).map_err(|_| bad("currency"))?;
    let fee = Money::new(row.try_get(6)?, currency);
    let details = PhysicianDetails {
        name: PhysicianName::parse(&text(2)?).map_err(|_| bad("name"))?,
        tariff: Tariff::new(rule, fee).map_err(|_| bad("fee_minor"))?,
        default_minutes: row.try_get(8)?,
    };
    Ok(Listed {
        cursor: row.try_get(0)?,
        item: Physician {
            id: Uuid::parse_str(&text(1)?).map_err(|_| bad("id"))?,
            details,
            created_at: time::from_db(&text(9)?).map_err(|_| bad("created_at"))?,
        },
    })
}

const APPOINTMENT_COLUMNS: &str = "seq, id, patient_id, physician_id, status, scheduled_start, \
     scheduled_end, scheduled_price_minor, currency, actual_end, duration_minutes, price_minor, \
     cancel_reason, created_at, updated_at";

fn appointment_from_row(row: &AnyRow) -> Result<Listed<Appointment>, sqlx::Error> {
    let bad = |column| corrupt("appointments", column);
    let text = |i: usize| row.try_get::<String, _>(i);
    let uuid =
        |i: usize, column| text(i).and_then(|t| Uuid::parse_str(&t).map_err(|_| bad(column)));
    let timestamp =
        |i: usize, column| text(i).and_then(|t| time::from_db(&t).map_err(|_| bad(column)));
    let currency = Currency::parse(&text(8)?).map_err(|_| bad("currency"))?;
    let schedule = Schedule::new(
        timestamp(5, "scheduled_start")?,
        timestamp(6, "scheduled_end")?,
    )
    .map_err(|_| bad("scheduled_end"))?;
    let end = row.try_get::<Option<String>, _>(9)?;
    let minutes = row.try_get::<Option<i64>, _>(10)?;
    let price = row.try_get::<Option<i64>, _>(11)?;
    let closing = match (end, minutes, price) {
        (Some(end), Some(minutes), Some(price)) => Some(Closing {
            end: time::from_db(&end).map_err(|_| bad("actual_end"))?,
            minutes: BilledMinutes::new(minutes).map_err(|_| bad("duration_minutes"))?,
            price: Money::new(price, currency),
        }),
        (None, None, None) => None,
        _ => return Err(bad("actual_end")),
    };
    let cancel_reason = row
        .try_get::<Option<String>, _>(12)?
        .map(|r| CancelReason::parse(&r).map_err(|_| bad("cancel_reason")))
        .transpose()?;
    Ok(Listed {
        cursor: row.try_get(0)?,
        item: Appointment {
            id: uuid(1, "id")?,
            patient_id: uuid(2, "patient_id")?,
            physician_id: uuid(3, "physician_id")?,
            status: AppointmentStatus::parse(&text(4)?).ok_or_else(|| bad("status"))?,
            schedule,
            scheduled_price: Money::new(row.try_get(7)?, currency),
            closing,
            cancel_reason,
            created_at: timestamp(13, "created_at")?,
            updated_at: timestamp(14, "updated_at")?,
        },
    })
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ---- Physicians ----------------------------------------------------------------------

    /// Loads a physician inside the transaction, locking its row when `lock`.
    async fn physician_in(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        lock: bool,
    ) -> Result<Option<Physician>, sqlx::Error> {
        let suffix = if lock { self.db.for_update() } else { "" };
        let sql = format!("SELECT {PHYSICIAN_COLUMNS} FROM physicians WHERE id = $1{suffix}");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row
            .as_ref()
            .map(physician_from_row)
            .transpose()?
            .map(|l| l.item))
    }

    /// Registers `details` under `id`, or, when `id` is taken, answers the registered physician
    /// if its details are the same (a retried registration: nothing is written) and refuses
    /// otherwise. Returns the physician and whether this call created it.
    pub async fn register_physician(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        details: &PhysicianDetails,
    ) -> Result<(Physician, bool), StoreError> {
        if let Some(existing) = self.physician_in(tx, id, true).await? {
            existing.reregister(details)?;
            return Ok((existing, false));
        }
        let physician = Physician::register(id, details.clone(), now());
        let tariff = physician.details.tariff;
        let (block_minutes, minimum_minutes) = match tariff.rule() {
            Rule::PerBlock { block_minutes } => (Some(block_minutes), None),
            Rule::PerMinute { minimum_minutes } => (None, Some(minimum_minutes)),
        };
        // On PostgreSQL a concurrent registration of the same id may have inserted since the
        // read above: this insert then waits for it to commit and does nothing.
        let inserted = sqlx::query(
            "INSERT INTO physicians (id, name, tariff_kind, block_minutes, minimum_minutes, \
             fee_minor, currency, default_minutes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .bind(id.to_string())
        .bind(physician.details.name.as_str())
        .bind(tariff.rule().kind())
        .bind(block_minutes)
        .bind(minimum_minutes)
        .bind(tariff.fee().amount_minor)
        .bind(tariff.fee().currency.code())
        .bind(physician.details.default_minutes)
        .bind(time::to_db(physician.created_at))
        .fetch_optional(&mut **tx)
        .await?;
        if inserted.is_none() {
            let winner = self
                .physician_in(tx, id, true)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            winner.reregister(details)?;
            return Ok((winner, false));
        }
        Ok((physician, true))
    }

    pub async fn physician(&self, id: Uuid) -> Result<Option<Physician>, sqlx::Error> {
        let sql = format!("SELECT {PHYSICIAN_COLUMNS} FROM physicians WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(row
            .as_ref()
            .map(physician_from_row)
            .transpose()?
            .map(|l| l.item))
    }

    /// Physicians newest first (by registration), registered before the cursor `before`. At
    /// most `limit` (capped at [`MAX_PAGE`] + 1, so that a caller can ask for one more to learn
    /// whether another page follows).
    pub async fn physicians(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Listed<Physician>>, sqlx::Error> {
        let sql = format!(
            "SELECT {PHYSICIAN_COLUMNS} FROM physicians WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.clamp(1, MAX_PAGE + 1))
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(physician_from_row).collect()
    }

    // ---- Appointments --------------------------------------------------------------------

    /// Books an appointment under `id` for a patient the directory accepted: locks the
    /// physician, finds any booked appointment of theirs overlapping the slot, lets the domain
    /// decide, writes the appointment and `appointment.booked`.
    pub async fn book(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        booking: &Booking,
        meta: &EventMeta,
    ) -> Result<Appointment, StoreError> {
        let physician = self
            .physician_in(tx, booking.physician_id, true)
            .await?
            .ok_or(CareError::PhysicianNotFound(booking.physician_id))?;
        let schedule = booking.schedule(&physician)?;
        let clash = sqlx::query(
            "SELECT id FROM appointments WHERE physician_id = $1 AND status = 'booked' \
             AND scheduled_start < $2 AND scheduled_end > $3 ORDER BY scheduled_start LIMIT 1",
        )
        .bind(physician.id.to_string())
        .bind(time::to_db(schedule.end()))
        .bind(time::to_db(schedule.start()))
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get::<String, _>(0))
        .transpose()?
        .map(|id| Uuid::parse_str(&id).map_err(|_| corrupt("appointments", "id")))
        .transpose()?;
        let (appointment, event) =
            Appointment::book(id, booking.patient_id, &physician, schedule, clash, now())?;
        sqlx::query(
            "INSERT INTO appointments (id, patient_id, physician_id, status, scheduled_start, \
             scheduled_end, scheduled_price_minor, currency, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.to_string())
        .bind(appointment.patient_id.to_string())
        .bind(appointment.physician_id.to_string())
        .bind(appointment.status.as_str())
        .bind(time::to_db(schedule.start()))
        .bind(time::to_db(schedule.end()))
        .bind(appointment.scheduled_price.amount_minor)
        .bind(appointment.scheduled_price.currency.code())
        .bind(time::to_db(appointment.created_at))
        .bind(time::to_db(appointment.updated_at))
        .execute(&mut **tx)
        .await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(appointment)
    }

    /// Loads and locks an appointment for the rest of the transaction.
    async fn appointment_in(&self, tx: &mut WriteTx, id: Uuid) -> Result<Appointment, StoreError> {
        let sql = format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => Ok(appointment_from_row(&row)?.item),
            None => Err(CareError::AppointmentNotFound(id).into()),
        }
    }

    /// Writes what a decision changed and publishes its event.
    async fn save(
        &self,
        tx: &mut WriteTx,
        appointment: &Appointment,
        event: &CareEvent,
        meta: &EventMeta,
    ) -> Result<(), sqlx::Error> {
        let closing = appointment.closing.as_ref();
        sqlx::query(
            "UPDATE appointments SET status = $1, actual_end = $2, duration_minutes = $3, \
             price_minor = $4, cancel_reason = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(appointment.status.as_str())
        .bind(closing.map(|c| time::to_db(c.end)))
        .bind(closing.map(|c| c.minutes.get()))
        .bind(closing.map(|c| c.price.amount_minor))
        .bind(appointment.cancel_reason.as_ref().map(CancelReason::as_str))
        .bind(time::to_db(appointment.updated_at))
        .bind(appointment.id.to_string())
        .execute(&mut **tx)
        .await?;
        outbox::publish(&self.db, tx, SERVICE, meta, std::slice::from_ref(event)).await
    }

    /// Closes a consultation at its real `end` and prices it by the physician's tariff. With
    /// `claimed` (document 000's close), the patient, physician and start it names must be the
    /// stored ones.
    pub async fn close(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        end: Timestamp,
        claimed: Option<(Uuid, Uuid, Timestamp)>,
        meta: &EventMeta,
    ) -> Result<Appointment, StoreError> {
        let mut appointment = self.appointment_in(tx, id).await?;
        if let Some((patient_id, physician_id, start)) = claimed {
            appointment.check_is(patient_id, physician_id, start)?;
        }
        let physician = self
            .physician_in(tx, appointment.physician_id, false)
            .await?
            .ok_or_else(|| corrupt("appointments", "physician_id"))?;
        let event = appointment.close(&physician.details.tariff, end, now())?;
        self.save(tx, &appointment, &event, meta).await?;
        Ok(appointment)
    }

    pub async fn cancel(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        reason: Option<CancelReason>,
        meta: &EventMeta,
    ) -> Result<Appointment, StoreError> {
        let mut appointment = self.appointment_in(tx, id).await?;
        let event = appointment.cancel(reason, now())?;
        self.save(tx, &appointment, &event, meta).await?;
        Ok(appointment)
    }

    pub async fn no_show(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        meta: &EventMeta,
    ) -> Result<Appointment, StoreError> {
        let mut appointment = self.appointment_in(tx, id).await?;
        let event = appointment.mark_no_show(now())?;
        self.save(tx, &appointment, &event, meta).await?;
        Ok(appointment)
    }

    // Reads: no transaction, no locks.

    pub async fn appointment(&self, id: Uuid) -> Result<Option<Appointment>, sqlx::Error> {
        let sql = format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(row
            .as_ref()
            .map(appointment_from_row)
            .transpose()?
            .map(|l| l.item))
    }

    /// Appointments newest first (by booking), booked before the cursor `before`, of the
    /// patient and the physician of `filter` when given. At most `limit` (capped at
    /// [`MAX_PAGE`] + 1).
    pub async fn appointments(
        &self,
        filter: AppointmentFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Listed<Appointment>>, sqlx::Error> {
        let mut conditions = vec![String::from("seq < $1")];
        let mut values = Vec::new();
        for (column, id) in [
            ("patient_id", filter.patient_id),
            ("physician_id", filter.physician_id),
        ] {
            if let Some(id) = id {
                values.push(id.to_string());
                conditions.push(format!("{column} = ${}", values.len() + 2));
            }
        }
        let sql = format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE {} ORDER BY seq DESC LIMIT $2",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.clamp(1, MAX_PAGE + 1));
        for value in values {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.db.reader()).await?;
        rows.iter().map(appointment_from_row).collect()
    }
}
