//! The patients store: loads a patient (locked for the transaction), lets the domain decide,
//! then writes the row, its name keys and the outbox in the same transaction.

use chrono::SubsecRound as _;
use sqlx::any::AnyRow;
use sqlx::Row as _;
use tally_bus::outbox;
use tally_db::{Db, ServiceSchema, WriteTx};
use tally_http::Failure;
use tally_kernel::time::{self, Timestamp};
use tally_kernel::EventMeta;
use uuid::Uuid;

use crate::domain::search::{self, SearchTerm};
use crate::domain::{
    latest_today, DateOfBirth, Email, Patient, PatientChanges, PatientDetails, PatientError,
    PatientName, PatientStatus, Phone,
};
use crate::SERVICE;

pub static SCHEMA: std::sync::LazyLock<ServiceSchema> =
    std::sync::LazyLock::new(|| ServiceSchema {
        name: SERVICE,
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    });

/// Most patients returned in one page.
pub const MAX_PAGE: i64 = 100;

/// A patient in a list, with the cursor that pages past it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub cursor: i64,
    pub patient: Patient,
}

impl From<PatientError> for Failure {
    fn from(e: PatientError) -> Self {
        Failure::Refused(super::routes::problem(&e))
    }
}

/// Now, at the precision stored (microseconds), so that a patient answered from memory and the
/// same patient read back are equal.
fn now() -> Timestamp {
    time::now().trunc_subsecs(6)
}

const COLUMNS: &str =
    "seq, id, full_name, date_of_birth, email, phone, status, created_at, updated_at";

/// A stored value the service would not accept: named by column, never shown.
fn corrupt(column: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("patients.{column} holds a value the service refuses").into())
}

fn patient_from_row(row: &AnyRow) -> Result<Listed, sqlx::Error> {
    let text = |i: usize| row.try_get::<String, _>(i);
    let id = Uuid::parse_str(&text(1)?).map_err(|_| corrupt("id"))?;
    // Stored values were parsed on the way in; parsing them again keeps the types honest. The
    // date of birth was not in the future then, so it is not now.
    let today = latest_today(time::now());
    let details = PatientDetails {
        full_name: PatientName::parse(&text(2)?).map_err(|_| corrupt("full_name"))?,
        date_of_birth: DateOfBirth::parse(&text(3)?, today)
            .map_err(|_| corrupt("date_of_birth"))?,
        email: row
            .try_get::<Option<String>, _>(4)?
            .map(|e| Email::parse(&e).map_err(|_| corrupt("email")))
            .transpose()?,
        phone: row
            .try_get::<Option<String>, _>(5)?
            .map(|p| Phone::parse(&p).map_err(|_| corrupt("phone")))
            .transpose()?,
    };
    let timestamp = |i: usize, column: &str| {
        text(i).and_then(|t| time::from_db(&t).map_err(|_| corrupt(column)))
    };
    Ok(Listed {
        cursor: row.try_get(0)?,
        patient: Patient {
            id,
            details,
            status: PatientStatus::parse(&text(6)?).ok_or_else(|| corrupt("status"))?,
            created_at: timestamp(7, "created_at")?,
            updated_at: timestamp(8, "updated_at")?,
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

    /// Loads and locks a patient for the rest of the transaction.
    async fn patient_in(&self, tx: &mut WriteTx, id: Uuid) -> Result<Option<Listed>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM patients WHERE id = $1{}",
            self.db.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn existing_in(&self, tx: &mut WriteTx, id: Uuid) -> Result<Listed, Failure> {
        match self.patient_in(tx, id).await? {
            Some(found) => Ok(found),
            None => Err(PatientError::NotFound(id).into()),
        }
    }

    /// Replaces the keys the patient's name is searched by.
    async fn save_name_keys(
        &self,
        tx: &mut WriteTx,
        seq: i64,
        name: &PatientName,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM patient_name_keys WHERE patient_seq = $1")
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        for key in search::name_keys(name) {
            sqlx::query("INSERT INTO patient_name_keys (name_key, patient_seq) VALUES ($1, $2)")
                .bind(key)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Registers `details` under `id`, or, when `id` is taken, answers the registered patient if
    /// its details are the same (a retried registration: nothing is written) and refuses
    /// otherwise. Returns the patient and whether this call created it.
    pub async fn register(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        details: &PatientDetails,
        meta: &EventMeta,
    ) -> Result<(Patient, bool), Failure> {
        if let Some(existing) = self.patient_in(tx, id).await? {
            existing.patient.reregister(details)?;
            return Ok((existing.patient, false));
        }
        let (patient, event) = Patient::register(id, details.clone(), now());
        let d = &patient.details;
        // On PostgreSQL a concurrent registration of the same id may have inserted since the
        // read above: this insert then waits for it to commit and does nothing.
        let inserted = sqlx::query(
            "INSERT INTO patients (id, full_name, date_of_birth, email, phone, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .bind(id.to_string())
        .bind(d.full_name.as_str())
        .bind(d.date_of_birth.to_iso())
        .bind(d.email.as_ref().map(Email::as_str))
        .bind(d.phone.as_ref().map(Phone::as_str))
        .bind(patient.status.as_str())
        .bind(time::to_db(patient.created_at))
        .bind(time::to_db(patient.updated_at))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = inserted else {
            let winner = self
                .patient_in(tx, id)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            winner.patient.reregister(details)?;
            return Ok((winner.patient, false));
        };
        let seq: i64 = row.try_get(0)?;
        self.save_name_keys(tx, seq, &patient.details.full_name)
            .await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok((patient, true))
    }

    /// Applies `changes` to a patient; writes and publishes only when a value changed.
    pub async fn update(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        changes: &PatientChanges,
        meta: &EventMeta,
    ) -> Result<Patient, Failure> {
        let Listed {
            cursor: seq,
            mut patient,
        } = self.existing_in(tx, id).await?;
        let old_name = patient.details.full_name.clone();
        let Some(event) = patient.update(changes, now())? else {
            return Ok(patient);
        };
        let d = &patient.details;
        sqlx::query(
            "UPDATE patients SET full_name = $1, date_of_birth = $2, email = $3, phone = $4, \
             updated_at = $5 WHERE seq = $6",
        )
        .bind(d.full_name.as_str())
        .bind(d.date_of_birth.to_iso())
        .bind(d.email.as_ref().map(Email::as_str))
        .bind(d.phone.as_ref().map(Phone::as_str))
        .bind(time::to_db(patient.updated_at))
        .bind(seq)
        .execute(&mut **tx)
        .await?;
        if d.full_name != old_name {
            self.save_name_keys(tx, seq, &d.full_name).await?;
        }
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(patient)
    }

    /// Deactivates a patient. Deactivating a deactivated patient writes nothing.
    pub async fn deactivate(
        &self,
        tx: &mut WriteTx,
        id: Uuid,
        meta: &EventMeta,
    ) -> Result<Patient, Failure> {
        let Listed {
            cursor: seq,
            mut patient,
        } = self.existing_in(tx, id).await?;
        let Some(event) = patient.deactivate(now()) else {
            return Ok(patient);
        };
        sqlx::query("UPDATE patients SET status = $1, updated_at = $2 WHERE seq = $3")
            .bind(patient.status.as_str())
            .bind(time::to_db(patient.updated_at))
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        outbox::publish(&self.db, tx, SERVICE, meta, &[event]).await?;
        Ok(patient)
    }

    // Reads: no transaction, no locks.

    pub async fn patient(&self, id: Uuid) -> Result<Option<Patient>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM patients WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(row
            .as_ref()
            .map(patient_from_row)
            .transpose()?
            .map(|l| l.patient))
    }

    pub async fn status(&self, id: Uuid) -> Result<Option<PatientStatus>, sqlx::Error> {
        let row = sqlx::query("SELECT status FROM patients WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get(0)?;
        PatientStatus::parse(&status)
            .map(Some)
            .ok_or_else(|| corrupt("status"))
    }

    /// Patients newest first (by registration), registered before the cursor `before`, whose
    /// name matches `search` when given. At most `limit` (capped at [`MAX_PAGE`] + 1, so that
    /// a caller can ask for one more to learn whether another page follows).
    pub async fn list(
        &self,
        search: Option<&SearchTerm>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Listed>, sqlx::Error> {
        let before = before.unwrap_or(i64::MAX);
        let limit = limit.clamp(1, MAX_PAGE + 1);
        let rows = match search {
            None => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM patients WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(self.db.reader())
                    .await?
            }
            Some(term) => {
                let upper = term.upper_bound();
                let below_upper = if upper.is_some() {
                    " AND name_key < $4"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT {COLUMNS} FROM patients WHERE seq < $1 AND seq IN \
                     (SELECT patient_seq FROM patient_name_keys WHERE name_key >= $3{below_upper}) \
                     ORDER BY seq DESC LIMIT $2"
                );
                let mut query = sqlx::query(&sql)
                    .bind(before)
                    .bind(limit)
                    .bind(term.lower_bound());
                if let Some(upper) = upper {
                    query = query.bind(upper);
                }
                query.fetch_all(self.db.reader()).await?
            }
        };
        rows.iter().map(patient_from_row).collect()
    }
}
